//! The databases a Data layer reads, behind one face: LMDB ([`super::lmdb`]) and LevelDB
//! ([`super::leveldb`]), records in key order; and the writing of either kind, as Caffe's
//! `convert_imageset` and `extract_features` do.

use super::leveldb::LevelDb;
use super::lmdb::Lmdb;
use crate::{Error, Result};
use std::borrow::Cow;
use std::path::Path;

/// The two kinds of database Caffe's tools write and its Data layer reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DbKind {
    /// LMDB: a folder holding `data.mdb` (and `lock.mdb`). The default of Caffe's tools
    /// (`-backend lmdb`).
    #[default]
    Lmdb,
    /// LevelDB: a folder holding `CURRENT`, a MANIFEST and table or log files. The default of
    /// the Data layer's `backend` field.
    LevelDb,
}

impl DbKind {
    /// The kind as Caffe's tools name it (`lmdb`, `leveldb`; any case).
    pub fn parse(name: &str) -> Result<DbKind> {
        match name.to_ascii_lowercase().as_str() {
            "lmdb" => Ok(DbKind::Lmdb),
            "leveldb" => Ok(DbKind::LevelDb),
            _ => Err(Error::Config(format!("database kind `{name}`: lmdb or leveldb"))),
        }
    }

    /// The kind a Data layer's `backend` names.
    pub fn of_backend(backend: crate::proto::data_parameter::Db) -> DbKind {
        match backend {
            crate::proto::data_parameter::Db::Lmdb => DbKind::Lmdb,
            crate::proto::data_parameter::Db::Leveldb => DbKind::LevelDb,
        }
    }

    /// The name Caffe's tools take: `lmdb` or `leveldb`.
    pub fn name(self) -> &'static str {
        match self {
            DbKind::Lmdb => "lmdb",
            DbKind::LevelDb => "leveldb",
        }
    }

    /// Whether writing a database of this kind at `dir` would be refused because one (or, for
    /// LevelDB, any file) is there.
    pub fn occupied(self, dir: &Path) -> bool {
        match self {
            DbKind::Lmdb => dir.join("data.mdb").exists(),
            DbKind::LevelDb => super::leveldb::occupied(dir),
        }
    }
}

impl std::fmt::Display for DbKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbKind::Lmdb => "LMDB",
            DbKind::LevelDb => "LevelDB",
        })
    }
}

/// What [`write`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Lmdb(super::lmdb::Written),
    LevelDb(super::leveldb::Written),
}

impl Written {
    /// Records written.
    pub fn entries(&self) -> u64 {
        match self {
            Written::Lmdb(w) => w.entries,
            Written::LevelDb(w) => w.entries,
        }
    }
}

/// The layout written, for a log line: `LMDB: 12 pages, a tree 2 deep` or `LevelDB: 3 table
/// files on level 1, 1300 blocks, 5.1 MiB`.
impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |n: u64| if n == 1 { "" } else { "s" };
        match self {
            Written::Lmdb(w) => write!(f, "LMDB: {} page{}, a tree {} deep", w.pages, s(w.pages), w.depth),
            Written::LevelDb(w) if w.tables == 0 => write!(f, "LevelDB: no table files"),
            Written::LevelDb(w) => write!(
                f,
                "LevelDB: {} table file{} on level {}, {} block{}, {:.1} MiB",
                w.tables,
                s(w.tables),
                w.level,
                w.blocks,
                s(w.blocks),
                w.bytes as f64 / (1 << 20) as f64
            ),
        }
    }
}

/// Writes the records `records` gives, keys strictly increasing (bytewise), as a new database
/// of kind `kind` at `dir` ([`super::lmdb::write_lmdb`], [`super::leveldb::write_leveldb`]).
/// An existing database is never overwritten, and an error from `records` leaves none.
pub fn write<I>(kind: DbKind, dir: &Path, records: I) -> Result<Written>
where
    I: IntoIterator<Item = Result<(Vec<u8>, Vec<u8>)>>,
{
    match kind {
        DbKind::Lmdb => super::lmdb::write_lmdb(dir, records).map(Written::Lmdb),
        DbKind::LevelDb => super::leveldb::write_leveldb(dir, records).map(Written::LevelDb),
    }
}

/// An open database of either kind.
pub enum Database {
    Lmdb(Lmdb),
    LevelDb(LevelDb),
}

impl Database {
    /// The database of kind `kind` at `path`: LMDB (an environment folder or its data file) or
    /// LevelDB (a folder). A database with no record is refused: there is nothing to read
    /// from it.
    pub fn open(path: &Path, kind: DbKind) -> Result<Database> {
        let db = match kind {
            DbKind::LevelDb => Database::LevelDb(LevelDb::open(path)?),
            DbKind::Lmdb => Database::Lmdb(Lmdb::open(path)?),
        };
        if db.is_empty() {
            return Err(Error::Decode { file: path.display().to_string(), msg: "the database holds no records".into() });
        }
        Ok(db)
    }

    /// The file or folder read.
    pub fn path(&self) -> &Path {
        match self {
            Database::Lmdb(d) => d.path(),
            Database::LevelDb(d) => d.path(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        match self {
            Database::Lmdb(d) => d.len(),
            Database::LevelDb(d) => d.len(),
        }
    }

    /// Whether the database holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of record `i`.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        match self {
            Database::Lmdb(d) => d.get(i).map(|(k, _)| k),
            Database::LevelDb(d) => d.key(i),
        }
    }

    /// The value of record `i`.
    pub fn value(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        match self {
            Database::Lmdb(d) => d
                .get(i)
                .map(|(_, v)| Cow::Borrowed(v))
                .ok_or_else(|| Error::Internal(format!("record {i} of {}", d.len()))),
            Database::LevelDb(d) => d.value(i),
        }
    }

    /// Record `i` named for errors: the database, the index and the key.
    pub fn describe(&self, i: usize) -> std::path::PathBuf {
        let key = self.key(i).map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        std::path::PathBuf::from(format!("{} (record {i}, key `{key}`)", self.path().display()))
    }
}
