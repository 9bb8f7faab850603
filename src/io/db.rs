//! The databases a Data layer reads, behind one face: LMDB ([`super::lmdb`]) and LevelDB
//! ([`super::leveldb`]), records in key order.

use super::leveldb::LevelDb;
use super::lmdb::Lmdb;
use crate::Result;
use std::borrow::Cow;
use std::path::Path;

/// An open database of either kind.
pub enum Database {
    Lmdb(Lmdb),
    LevelDb(LevelDb),
}

impl Database {
    /// The database at `path`: LMDB (an environment folder or its data file) or LevelDB (a
    /// folder). A database with no record is refused: there is nothing to read from it.
    pub fn open(path: &Path, leveldb: bool) -> Result<Database> {
        let db = if leveldb { Database::LevelDb(LevelDb::open(path)?) } else { Database::Lmdb(Lmdb::open(path)?) };
        if db.is_empty() {
            return Err(crate::Error::Decode { file: path.display().to_string(), msg: "the database holds no records".into() });
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
                .ok_or_else(|| crate::Error::Internal(format!("record {i} of {}", d.len()))),
            Database::LevelDb(d) => d.value(i),
        }
    }

    /// Record `i` named for errors: the database, the index and the key.
    pub fn describe(&self, i: usize) -> std::path::PathBuf {
        let key = self.key(i).map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
        std::path::PathBuf::from(format!("{} (record {i}, key `{key}`)", self.path().display()))
    }
}
