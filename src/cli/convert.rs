//! `crema convert_imageset ROOTFOLDER/ LISTFILE DB_NAME` and `crema compute_image_mean DB
//! MEAN`: Caffe's tools of those names, with their flags, making the LMDB or LevelDB database a
//! Data layer reads and its mean file.

use anyhow::bail;
use crema::data::imageset::{convert_imageset, ImagesetOptions};
use crema::io::db::DbKind;
use std::path::PathBuf;

/// `-backend lmdb|leveldb`, as Caffe's tools take it.
fn db_kind(name: &str) -> Result<DbKind, String> {
    DbKind::parse(name).map_err(|e| e.to_string())
}

#[derive(clap::Args)]
pub struct Args {
    /// Folder the list's paths are relative to, prefixed to each as text (give its trailing
    /// slash, as to Caffe).
    root: String,
    /// `path label` lines.
    list: PathBuf,
    /// The database folder to create: for LMDB one without a data.mdb, for LevelDB a new or
    /// empty one.
    db: PathBuf,
    /// Read the images as one gray channel instead of B, G, R.
    #[arg(long)]
    gray: bool,
    /// Shuffle the lines (with --seed) before writing.
    #[arg(long)]
    shuffle: bool,
    /// The shuffle's seed.
    #[arg(long, default_value_t = 1701)]
    seed: u64,
    /// Store each image file as it is (an encoded Datum) instead of its pixels.
    #[arg(long)]
    encoded: bool,
    /// With --encoded, Caffe re-encodes to this type when it differs from the file's; crema
    /// stores files as they are, so only the files' own type ("" or their extension) is taken.
    #[arg(long = "encode_type", default_value = "")]
    encode_type: String,
    /// Height to resize every image to (with --resize_width).
    #[arg(long = "resize_height", default_value_t = 0)]
    resize_height: usize,
    /// Width to resize every image to (with --resize_height).
    #[arg(long = "resize_width", default_value_t = 0)]
    resize_width: usize,
    /// Refuse images whose size differs from the first one's.
    #[arg(long = "check_size")]
    check_size: bool,
    /// The database kind: lmdb or leveldb (read it with `backend: LMDB` or `backend: LEVELDB`
    /// in the Data layer).
    #[arg(long, default_value = "lmdb", value_parser = db_kind)]
    backend: DbKind,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if !a.encode_type.is_empty() {
        if !a.encoded {
            bail!("--encode_type needs --encoded");
        }
        eprintln!("note: files are stored as they are; --encode_type {} is checked against each file's extension", a.encode_type);
    }
    let resize = match (a.resize_height, a.resize_width) {
        (0, 0) => None,
        (h, w) if h > 0 && w > 0 => Some((h, w)),
        _ => bail!("--resize_height and --resize_width go together"),
    };
    let opts = ImagesetOptions { gray: a.gray, shuffle: a.shuffle.then_some(a.seed), resize, check_size: a.check_size, encoded: a.encoded, backend: a.backend };
    if !a.encode_type.is_empty() {
        check_extensions(&a.list, &a.encode_type)?;
    }
    let mut reported = 0;
    let written = convert_imageset(&a.root, &a.list, &a.db, &opts, |done| {
        if done / 1000 > reported / 1000 {
            eprintln!("Processed {done} files.");
        }
        reported = done;
    })?;
    eprintln!("Processed {} files: {} ({written})", written.entries(), a.db.display());
    Ok(())
}

/// Every listed file has the extension `kind` (Caffe would re-encode the others).
fn check_extensions(list: &std::path::Path, kind: &str) -> anyhow::Result<()> {
    let norm = |e: &str| match e.to_ascii_lowercase().as_str() {
        "jpeg" => "jpg".to_string(),
        other => other.to_string(),
    };
    for e in crema::data::source::read_labeled(list)? {
        let ext = std::path::Path::new(&e.image).extension().and_then(|x| x.to_str()).map(norm);
        if ext.as_deref() != Some(norm(kind).as_str()) {
            bail!("{} (line {} of {}) is not a .{kind} file; crema stores files as they are and does not re-encode them", e.image, e.line, list.display());
        }
    }
    Ok(())
}

/// `crema compute_image_mean DB OUT.binaryproto`.
#[derive(clap::Args)]
pub struct MeanArgs {
    /// The database folder (as `convert_imageset` makes).
    db: PathBuf,
    /// The mean file to write (`.binaryproto`, for `transform_param { mean_file }`).
    out: PathBuf,
    /// The database kind: lmdb or leveldb.
    #[arg(long, default_value = "lmdb", value_parser = db_kind)]
    backend: DbKind,
}

pub fn mean(a: MeanArgs) -> anyhow::Result<()> {
    let db = crema::io::db::Database::open(&a.db, a.backend)?;
    let blob = crema::data::imageset::compute_image_mean(&db)?;
    crema::io::write_binaryproto(&a.out, &blob)?;
    let means = crema::data::imageset::channel_means(&blob);
    eprintln!("Number of channels: {}", means.len());
    for (c, m) in means.iter().enumerate() {
        eprintln!("mean_value channel [{c}]: {m}");
    }
    eprintln!("the mean of {} records ({:?}) written to {}", db.len(), blob.shape, a.out.display());
    Ok(())
}
