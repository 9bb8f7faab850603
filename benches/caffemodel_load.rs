//! Loads a synthetic 500 MB caffemodel and compares the time with `cat file > /dev/null`.
//!
//! `cargo bench --bench caffemodel_load` (set `CREMA_BENCH_MB` for another size and
//! `CREMA_BENCH_DIR` for where the file goes; it is removed afterwards). With
//! `CREMA_BENCH_COLD=1`, and as root, it also drops the page cache (machine-wide) before a cold
//! `cat` and a cold load. Prints timings; passes or fails on nothing but errors.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crema::io::{BlobRef, read_weights, write_caffemodel};
use crema::proto::{LayerParameter, NetParameter};

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        out = Some(v);
    }
    (best, out.expect("runs > 0"))
}

fn main() -> crema::Result<()> {
    let mb: usize = std::env::var("CREMA_BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500);
    let dir = std::env::var_os("CREMA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("crema-bench-{}.caffemodel", std::process::id()));

    // A VGG-like spread: a few huge fully-connected blobs and many conv-sized ones.
    let total = mb * 1_000_000 / 4;
    let sizes: Vec<usize> = [0.60, 0.15, 0.05, 0.04, 0.04, 0.04, 0.04, 0.02, 0.02]
        .iter()
        .map(|f| (total as f64 * f) as usize)
        .chain(std::iter::repeat_n(total / 1000, 10))
        .collect();
    let data: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as f32 * 1e-6).collect())
        .collect();
    let shapes: Vec<[usize; 2]> = sizes.iter().map(|&n| [n, 1]).collect();
    let net = NetParameter {
        name: Some("bench".into()),
        layer: (0..sizes.len())
            .map(|i| LayerParameter {
                name: Some(format!("fc{i}")),
                r#type: Some("InnerProduct".into()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let blobs: Vec<Vec<BlobRef<'_>>> = (0..sizes.len())
        .map(|i| {
            vec![BlobRef {
                shape: &shapes[i],
                data: &data[i],
                diff: &[],
            }]
        })
        .collect();

    let t = Instant::now();
    write_caffemodel(&path, &net, &blobs, false)?;
    let write = t.elapsed();
    let bytes = std::fs::metadata(&path)
        .map_err(|e| crema::Error::io(&path, e))?
        .len();
    let floats_expected: usize = sizes.iter().sum();
    drop(blobs);
    drop(data);
    let size_mb = bytes as f64 / 1e6;

    let cat = |p: &PathBuf| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("cat '{}' > /dev/null", p.display()))
            .status()
            .map(|s| s.success())
    };
    let (cat_t, _) = best_of(3, || cat(&path));
    let (read_t, _) = best_of(3, || std::fs::read(&path).map(|v| v.len()));
    let (dd_t, _) = best_of(3, || {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "dd if='{}' of=/dev/null bs=1M status=none",
                path.display()
            ))
            .status()
    });
    let (touch_t, _) = best_of(3, || {
        let v: Vec<f32> = (0..floats_expected).map(|i| i as f32).collect();
        v.len()
    });
    let (load_t, weights) = best_of(3, || read_weights(&path));
    let weights = weights?;
    let floats: usize = weights
        .layers
        .iter()
        .flat_map(|l| &l.blobs)
        .map(|b| b.data.len())
        .sum();
    assert_eq!(floats, sizes.iter().sum::<usize>());

    let rate = |d: Duration| size_mb / d.as_secs_f64();
    println!(
        "file: {size_mb:.1} MB, {} layers, {floats} floats",
        weights.layers.len()
    );
    println!(
        "write_caffemodel        {:>8.1} ms  {:>7.0} MB/s (atomic, fsynced)",
        write.as_secs_f64() * 1e3,
        rate(write)
    );
    println!(
        "cat file > /dev/null    {:>8.1} ms  {:>7.0} MB/s (page cache warm, best of 3)",
        cat_t.as_secs_f64() * 1e3,
        rate(cat_t)
    );
    println!(
        "dd bs=1M of=/dev/null   {:>8.1} ms  {:>7.0} MB/s",
        dd_t.as_secs_f64() * 1e3,
        rate(dd_t)
    );
    println!(
        "fill a fresh Vec<f32>   {:>8.1} ms  {:>7.0} MB/s (allocation + page faults alone)",
        touch_t.as_secs_f64() * 1e3,
        rate(touch_t)
    );
    println!(
        "std::fs::read           {:>8.1} ms  {:>7.0} MB/s",
        read_t.as_secs_f64() * 1e3,
        rate(read_t)
    );
    println!(
        "read_weights            {:>8.1} ms  {:>7.0} MB/s ({:.2}x cat)",
        load_t.as_secs_f64() * 1e3,
        rate(load_t),
        load_t.as_secs_f64() / cat_t.as_secs_f64()
    );
    if std::env::var_os("CREMA_BENCH_COLD").is_some() {
        let drop_caches = || {
            Command::new("sh")
                .arg("-c")
                .arg("sync && echo 3 > /proc/sys/vm/drop_caches")
                .status()
                .is_ok_and(|s| s.success())
        };
        if drop_caches() {
            let t = Instant::now();
            let _ = cat(&path);
            let cold_cat = t.elapsed();
            drop_caches();
            let t = Instant::now();
            let w = read_weights(&path)?;
            let cold_load = t.elapsed();
            drop(w);
            println!(
                "cold cat                {:>8.1} ms  {:>7.0} MB/s",
                cold_cat.as_secs_f64() * 1e3,
                rate(cold_cat)
            );
            println!(
                "cold read_weights       {:>8.1} ms  {:>7.0} MB/s ({:.2}x cold cat)",
                cold_load.as_secs_f64() * 1e3,
                rate(cold_load),
                cold_load.as_secs_f64() / cold_cat.as_secs_f64()
            );
        } else {
            println!("cold-cache runs skipped: cannot drop the page cache here");
        }
    }
    std::fs::remove_file(&path).map_err(|e| crema::Error::io(&path, e))?;
    Ok(())
}
