//! The training curves `crema train` keeps beside the snapshots: `<prefix>_train.csv` (one
//! row per iteration: loss, smoothed loss, learning rate, and the test outputs where a test
//! ran) and `<prefix>_train.png` (the loss curves), both rewritten atomically at every
//! snapshot and at the end. A resumed run starts from the rows the file already holds before
//! the iteration it resumes at, so the curves cover the whole training.

use crema::solver::{IterationRecord, TestRecord};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The font the plot's text is drawn with (DejaVu Sans, licence in assets/).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

#[derive(Clone, Default)]
struct Row {
    train: Option<IterationRecord>,
    tests: BTreeMap<usize, f32>,
}

/// The CSV's first columns, before one per test output.
const HEADER: [&str; 4] = ["iteration", "loss", "smoothed_loss", "lr"];

/// Everything recorded so far.
#[derive(Default)]
pub struct Curves {
    rows: BTreeMap<u64, Row>,
    /// Test columns in order of first appearance, with whether each is a loss.
    columns: Vec<(String, bool)>,
}

impl Curves {
    /// Records one iteration.
    pub fn iteration(&mut self, r: &IterationRecord) {
        self.rows.entry(r.iter).or_default().train = Some(*r);
    }

    /// Records one test's scores, one column per output element.
    pub fn tested(&mut self, r: &TestRecord) {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &r.scores {
            let k = seen.entry(&s.name).or_default();
            let repeated = r.scores.iter().filter(|o| o.name == s.name).count() > 1;
            let name = if repeated { format!("test{}/{}[{k}]", r.net, s.name) } else { format!("test{}/{}", r.net, s.name) };
            *k += 1;
            let col = match self.columns.iter().position(|(c, _)| *c == name) {
                Some(c) => {
                    // A column read back from a CSV did not know whether it was a loss.
                    self.columns[c].1 = s.loss_weight != 0.0;
                    c
                }
                None => {
                    self.columns.push((name, s.loss_weight != 0.0));
                    self.columns.len() - 1
                }
            };
            self.rows.entry(r.iter).or_default().tests.insert(col, s.value);
        }
    }

    /// The curves of an earlier run from its CSV (as [`Curves::csv`] writes it), keeping the
    /// rows before iteration `before`: a run resumed there continues them. Test columns read
    /// back count as losses when their name ends in `loss`, until a test of this run says.
    pub fn resume_from(text: &str, before: u64) -> Result<Curves, String> {
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().ok_or("the file is empty")?.split(',').collect();
        if header.len() < HEADER.len() || header[..HEADER.len()] != HEADER {
            return Err(format!("its header is not `{},...`", HEADER.join(",")));
        }
        let columns: Vec<(String, bool)> = header[HEADER.len()..].iter().map(|c| (c.to_string(), c.ends_with("loss"))).collect();
        let mut rows = BTreeMap::new();
        for (n, line) in lines.enumerate() {
            let bad = |what: &str| format!("line {}: {what}", n + 2);
            let cells: Vec<&str> = line.split(',').collect();
            if cells.len() != header.len() {
                return Err(bad(&format!("{} cells for {} columns", cells.len(), header.len())));
            }
            let iter: u64 = cells[0].parse().map_err(|_| bad("the iteration is not a number"))?;
            if iter >= before {
                continue;
            }
            let num = |c: &str| c.parse::<f32>().map_err(|_| bad(&format!("`{c}` is not a number")));
            let mut row = Row::default();
            if !cells[1].is_empty() {
                row.train = Some(IterationRecord { iter, loss: num(cells[1])?, smoothed_loss: num(cells[2])?, lr: num(cells[3])? });
            }
            for (c, cell) in cells[4..].iter().enumerate() {
                if !cell.is_empty() {
                    row.tests.insert(c, num(cell)?);
                }
            }
            rows.insert(iter, row);
        }
        Ok(Curves { rows, columns })
    }

    /// The CSV text.
    pub fn csv(&self) -> String {
        let mut out = HEADER.join(",");
        for (c, _) in &self.columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        for (iter, row) in &self.rows {
            let _ = write!(out, "{iter}");
            match &row.train {
                Some(t) => {
                    let _ = write!(out, ",{},{},{}", t.loss, t.smoothed_loss, t.lr);
                }
                None => out.push_str(",,,"),
            }
            for c in 0..self.columns.len() {
                out.push(',');
                if let Some(v) = row.tests.get(&c) {
                    let _ = write!(out, "{v}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// `<prefix>_train.csv` and `<prefix>_train.png`.
    pub fn paths(prefix: &str) -> (PathBuf, PathBuf) {
        (PathBuf::from(format!("{prefix}_train.csv")), PathBuf::from(format!("{prefix}_train.png")))
    }

    /// Writes both files (atomically).
    pub fn write(&self, prefix: &str) -> anyhow::Result<()> {
        let (csv, png) = Self::paths(prefix);
        let text = self.csv();
        crema::io::atomic_write(&csv, |w| std::io::Write::write_all(w, text.as_bytes()))?;
        let image = self.plot()?;
        crema::io::atomic_write(&png, |w| std::io::Write::write_all(w, &image))?;
        Ok(())
    }

    /// The loss curves as a PNG: the loss of each iteration, the smoothed loss, and the test
    /// outputs that are losses.
    pub fn plot(&self) -> anyhow::Result<Vec<u8>> {
        const W: u32 = 1000;
        const H: u32 = 600;
        register_font();
        let mut rgb = vec![255u8; (W * H * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let train: Vec<&IterationRecord> = self.rows.values().filter_map(|r| r.train.as_ref()).collect();
            let tests: Vec<(usize, Vec<(u64, f32)>)> = (0..self.columns.len())
                .filter(|&c| self.columns[c].1)
                .map(|c| (c, self.rows.iter().filter_map(|(&i, r)| r.tests.get(&c).map(|&v| (i, v))).collect()))
                .collect();
            let values = train
                .iter()
                .flat_map(|t| [t.loss, t.smoothed_loss])
                .chain(tests.iter().flat_map(|(_, pts)| pts.iter().map(|p| p.1)))
                .filter(|v| v.is_finite());
            let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            let (lo, hi) = if lo.is_finite() { (lo.min(0.0), hi.max(lo + 1e-6)) } else { (0.0, 1.0) };
            let first = self.rows.keys().next().copied().unwrap_or(0);
            let last = self.rows.keys().last().copied().unwrap_or(1).max(first + 1);

            let mut chart = ChartBuilder::on(&root)
                .caption("crema train: loss", ("sans-serif", 24))
                .margin(16)
                .x_label_area_size(44)
                .y_label_area_size(64)
                .build_cartesian_2d(first as f64..last as f64, lo as f64..(hi as f64 * 1.05))
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("iteration")
                .x_label_formatter(&|x| format!("{}", x.round() as i64))
                .y_desc("loss")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(plot_err)?;
            let raw = RGBColor(150, 180, 230);
            chart
                .draw_series(LineSeries::new(train.iter().map(|t| (t.iter as f64, t.loss as f64)), &raw))
                .map_err(plot_err)?
                .label("loss")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], raw));
            let smooth = RGBColor(20, 60, 160);
            chart
                .draw_series(LineSeries::new(
                    train.iter().map(|t| (t.iter as f64, t.smoothed_loss as f64)),
                    smooth.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label("smoothed loss")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], smooth.stroke_width(2)));
            let palette = [RGBColor(200, 30, 30), RGBColor(230, 120, 0), RGBColor(30, 150, 60), RGBColor(140, 40, 160)];
            for (k, (c, pts)) in tests.iter().enumerate() {
                let color = palette[k % palette.len()];
                let line = pts.iter().map(|&(i, v)| (i as f64, v as f64));
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                    .map_err(plot_err)?
                    .label(self.columns[*c].0.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                chart
                    .draw_series(line.map(|p| Circle::new(p, 3, color.filled())))
                    .map_err(plot_err)?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(plot_err)?;
            root.present().map_err(plot_err)?;
        }
        encode_png(&rgb, W, H)
    }
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the loss plot: {e}")
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The embedded font is known to parse (the curves test draws text with it).
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crema::solver::Score;

    #[test]
    fn csv_has_a_row_per_iteration_and_a_column_per_test_output() {
        let mut c = Curves::default();
        c.tested(&TestRecord {
            iter: 0,
            net: 0,
            loss: None,
            scores: vec![
                Score { name: "acc".into(), value: 0.5, loss_weight: 0.0 },
                Score { name: "loss".into(), value: 2.0, loss_weight: 1.0 },
            ],
        });
        c.iteration(&IterationRecord { iter: 0, loss: 2.5, smoothed_loss: 2.5, lr: 0.01 });
        c.iteration(&IterationRecord { iter: 1, loss: 1.5, smoothed_loss: 2.0, lr: 0.01 });
        c.tested(&TestRecord {
            iter: 2,
            net: 0,
            loss: None,
            scores: vec![
                Score { name: "acc".into(), value: 0.75, loss_weight: 0.0 },
                Score { name: "loss".into(), value: 1.0, loss_weight: 1.0 },
            ],
        });
        assert_eq!(
            c.csv(),
            "iteration,loss,smoothed_loss,lr,test0/acc,test0/loss\n0,2.5,2.5,0.01,0.5,2\n1,1.5,2,0.01,,\n2,,,,0.75,1\n"
        );
        let png = c.plot().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // Text was drawn: the picture has more dark pixels than the curves alone would give.
        assert!(png.len() > 5000, "{}", png.len());

        // Resumed at iteration 1: the rows before it come back, the run's own follow.
        let mut r = Curves::resume_from(&c.csv(), 1).unwrap();
        assert_eq!(r.csv(), "iteration,loss,smoothed_loss,lr,test0/acc,test0/loss\n0,2.5,2.5,0.01,0.5,2\n");
        r.iteration(&IterationRecord { iter: 1, loss: 1.25, smoothed_loss: 1.875, lr: 0.01 });
        assert!(r.csv().ends_with("0,2.5,2.5,0.01,0.5,2\n1,1.25,1.875,0.01,,\n"), "{}", r.csv());
        assert_eq!(r.columns, vec![("test0/acc".to_string(), false), ("test0/loss".to_string(), true)]);
    }

    #[test]
    fn a_damaged_csv_is_refused_with_the_line() {
        assert!(Curves::resume_from("", 5).err().unwrap().contains("empty"));
        assert!(Curves::resume_from("a,b\n", 5).err().unwrap().contains("header"));
        let e = Curves::resume_from("iteration,loss,smoothed_loss,lr\n0,1,1,0.1\n1,x,1,0.1\n", 5).err().unwrap();
        assert_eq!(e, "line 3: `x` is not a number");
        let e = Curves::resume_from("iteration,loss,smoothed_loss,lr\n0,1,1\n", 5).err().unwrap();
        assert_eq!(e, "line 2: 3 cells for 4 columns");
    }
}
