//! All-or-nothing writes: every file is written to a temporary file beside it, and the
//! temporary files replace the originals only once all of them were written.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Writes `(path, text)` for every file, or nothing: on an error no file has changed and the
/// temporary files are gone. A rename that fails after others succeeded (the disk went away
/// between two renames) puts the renamed files' original texts back.
pub fn write_all(files: &[(String, String, String)]) -> Result<(), String> {
    let mut temporaries: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |temporaries: &[(PathBuf, PathBuf)]| {
        for (temporary, _) in temporaries {
            let _ = fs::remove_file(temporary);
        }
    };
    for (path, _before, after) in files {
        // A symbolic link stays one: the file it names is replaced.
        let target = fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        match write_beside(&target, after) {
            Ok(temporary) => temporaries.push((temporary, target)),
            Err(error) => {
                cleanup(&temporaries);
                return Err(format!("{path}: {error}; no file was changed"));
            }
        }
    }
    for (i, (temporary, target)) in temporaries.iter().enumerate() {
        if let Err(error) = fs::rename(temporary, target) {
            let mut restored = true;
            for ((_, done), (_, before, _)) in temporaries[..i].iter().zip(files) {
                restored &= fs::write(done, before).is_ok();
            }
            cleanup(&temporaries[i..]);
            let state = if restored {
                "no file was changed"
            } else {
                "some files could not be restored: check `git status`"
            };
            return Err(format!("{}: {error}; {state}", target.display()));
        }
    }
    Ok(())
}

/// Writes `text` to a new file in `target`'s directory, with `target`'s permissions.
fn write_beside(target: &Path, text: &str) -> std::io::Result<PathBuf> {
    let name = target
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let temporary = target.with_file_name(format!(".{name}.fluxfence-{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temporary)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            let permissions = fs::metadata(target)?.permissions();
            fs::set_permissions(&temporary, permissions)
        });
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    Ok(temporary)
}
