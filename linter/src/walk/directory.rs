//! An open directory: its entries, and its files opened relative to it.
//!
//! Opening `a/b/c/file.yaml` by its full path makes the kernel look up `a`, `b` and `c` again
//! for every file; opened relative to the directory's own handle, only the file's name is
//! looked up. Listing through the handle also spares the C library's `opendir`, which checks
//! the handle with one more system call and allocates a 32 KiB buffer per directory.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::Path;

/// What an entry is, as far as the walk cares. Symbolic links are `Other`: not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryType {
    File,
    Dir,
    Other,
}

#[cfg(unix)]
pub use unix::Directory;

#[cfg(not(unix))]
pub use portable::Directory;

#[cfg(unix)]
mod unix {
    use super::{EntryType, File, OsStr, OsString, Path, io};
    use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
    use std::os::unix::ffi::OsStringExt as _;

    pub struct Directory {
        handle: Dir,
    }

    impl Directory {
        pub fn open(path: &Path) -> io::Result<Directory> {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            let fd = rustix::fs::open(path, flags, Mode::empty())?;
            Ok(Directory {
                handle: Dir::new(fd)?,
            })
        }

        /// Every entry but `.` and `..`, in the order the file system gives them.
        pub fn entries(&mut self) -> io::Result<Vec<(OsString, EntryType)>> {
            let mut entries = Vec::new();
            while let Some(entry) = self.handle.read() {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let name = OsString::from_vec(name.to_vec());
                let entry_type = match entry.file_type() {
                    // Some file systems leave the type out of the listing: ask for it.
                    FileType::Unknown => self.stat_type(&name)?,
                    known => entry_type(known),
                };
                entries.push((name, entry_type));
            }
            Ok(entries)
        }

        pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
            let flags = OFlags::RDONLY | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(self.handle.fd()?, name, flags, Mode::empty())?;
            Ok(File::from(fd))
        }

        fn stat_type(&self, name: &OsStr) -> io::Result<EntryType> {
            let stat = rustix::fs::statat(self.handle.fd()?, name, AtFlags::SYMLINK_NOFOLLOW)?;
            Ok(entry_type(FileType::from_raw_mode(stat.st_mode)))
        }
    }

    fn entry_type(file_type: FileType) -> EntryType {
        match file_type {
            FileType::RegularFile => EntryType::File,
            FileType::Directory => EntryType::Dir,
            _ => EntryType::Other,
        }
    }
}

#[cfg(not(unix))]
mod portable {
    use super::{EntryType, File, OsStr, OsString, Path, io};
    use std::path::PathBuf;

    pub struct Directory {
        path: PathBuf,
        listing: Option<std::fs::ReadDir>,
    }

    impl Directory {
        pub fn open(path: &Path) -> io::Result<Directory> {
            Ok(Directory {
                path: path.to_path_buf(),
                listing: Some(std::fs::read_dir(path)?),
            })
        }

        pub fn entries(&mut self) -> io::Result<Vec<(OsString, EntryType)>> {
            let Some(listing) = self.listing.take() else {
                return Ok(Vec::new());
            };
            listing
                .map(|entry| {
                    let entry = entry?;
                    let file_type = entry.file_type()?;
                    let entry_type = if file_type.is_file() {
                        EntryType::File
                    } else if file_type.is_dir() {
                        EntryType::Dir
                    } else {
                        EntryType::Other
                    };
                    Ok((entry.file_name(), entry_type))
                })
                .collect()
        }

        pub fn open_file(&self, name: &OsStr) -> io::Result<File> {
            File::open(self.path.join(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_and_directories_and_opens_files_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: A\n").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("a.yaml", dir.path().join("link.yaml")).unwrap();

        let mut directory = Directory::open(dir.path()).unwrap();
        let mut entries = directory.entries().unwrap();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected = vec![
            (OsString::from("a.yaml"), EntryType::File),
            (OsString::from("sub"), EntryType::Dir),
        ];
        #[cfg(unix)]
        expected.push((OsString::from("link.yaml"), EntryType::Other));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(entries, expected);

        let text = std::io::read_to_string(directory.open_file(OsStr::new("a.yaml")).unwrap());
        assert_eq!(text.unwrap(), "kind: A\n");
        let missing = directory.open_file(OsStr::new("gone.yaml")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_an_empty_listing() {
        let dir = tempfile::tempdir().unwrap();
        let error = Directory::open(&dir.path().join("gone")).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
