//! The template files a definition names (`templates.*.file`), read from
//! the process library folder and nowhere else.
//!
//! A template file is stored with the definition at deploy and mailed to
//! agencies, so whoever writes a definition could otherwise have any file
//! the server can read sent out: `file: /proc/self/environ` was, with the
//! SMTP password in it; `/dev/zero` exhausted memory and a FIFO hung the
//! check (issue 12, finding 5). So a name must stay inside the folder of
//! the definition once `.` and `..` are resolved and once symlinks are
//! (the canonical path must start with the folder's), must be a regular
//! file (judged from its metadata, before it is opened: opening a FIFO
//! waits for a writer), and is read through a bounded reader, never past
//! [`MAX_TEMPLATE_FILE`]. A refusal quotes the name, never the contents.
//!
//! A file swapped for a FIFO between the metadata check and the open
//! would still make the open wait; the folder belongs to the
//! administrators, so that window is accepted.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The largest template file read: a notice or a document is a few pages.
pub const MAX_TEMPLATE_FILE: u64 = 256 * 1024;

/// Why a template file was not read.
pub(super) struct Refusal {
    /// What is wrong, naming the file as written.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

/// Reads the template file `name`, relative to the library folder `dir`.
pub(super) fn read(dir: &Path, name: &str) -> Result<String, Refusal> {
    // A definition named without a folder (`duban validate letter.yaml`)
    // has the empty path as its folder: the current one.
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let refuse = |why: String| {
        Refusal {
        message: format!("template file `{name}` {why}"),
        hint: Some(format!(
            "template files are read from the process library folder ({}) and its subfolders, e.g. `templates/notice.hbs`",
            dir.display()
        )),
    }
    };
    let relative = inside(name).ok_or_else(|| {
        refuse(
            if Path::new(name).has_root() || Path::new(name).is_absolute() {
                "is an absolute path".into()
            } else {
                "leads out of the process library folder".into()
            },
        )
    })?;
    let io = |e: std::io::Error| Refusal {
        message: format!("template file `{name}` cannot be read: {e}"),
        hint: Some(format!("paths are relative to {}", dir.display())),
    };
    let base = dir.canonicalize().map_err(io)?;
    let path = base.join(&relative).canonicalize().map_err(io)?;
    if !path.starts_with(&base) {
        return Err(refuse(
            "is a link to a file outside the process library folder".into(),
        ));
    }
    // Judged before opening: a FIFO would block the open, a device never end.
    let meta = std::fs::metadata(&path).map_err(io)?;
    if !meta.is_file() {
        return Err(refuse(
            "is not a regular file (a folder, a device or a pipe)".into(),
        ));
    }
    let too_large = || refuse(format!("is larger than {} KiB", MAX_TEMPLATE_FILE / 1024));
    if meta.len() > MAX_TEMPLATE_FILE {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_TEMPLATE_FILE + 1).read_to_end(&mut bytes))
        .map_err(io)?;
    if bytes.len() as u64 > MAX_TEMPLATE_FILE {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| refuse("is not UTF-8 text".into()))
}

/// `name` as a path below the folder, `.` and `..` resolved; `None` when
/// it is absolute or climbs out.
fn inside(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A definition given as a bare file name reads its templates from the
    /// current folder (the tests run in `core/`).
    #[test]
    fn the_empty_folder_is_the_current_one() {
        assert!(read(Path::new(""), "src/lib.rs").is_ok());
        assert!(read(Path::new(""), "../outside.hbs").is_err());
    }

    fn refused(dir: &Path, name: &str) -> String {
        match read(dir, name) {
            Ok(text) => panic!("`{name}` was read: {text:?}"),
            Err(r) => r.message,
        }
    }

    /// Issue 12, finding 5: `file:` read any file the server could read.
    #[test]
    fn issue12_only_regular_files_inside_the_folder_are_read() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("processes");
        std::fs::create_dir_all(lib.join("templates")).unwrap();
        std::fs::write(lib.join("templates/ok.hbs"), "你好 {{agency}}").unwrap();
        std::fs::write(tmp.path().join("secret"), "DUBAN_SMTP_PASSWORD=x").unwrap();
        assert_eq!(
            read(&lib, "templates/ok.hbs").ok().unwrap(),
            "你好 {{agency}}"
        );
        assert!(read(&lib, "./templates/../templates/ok.hbs").is_ok());
        for (name, why) in [
            ("/etc/hostname", "is an absolute path"),
            ("/proc/self/environ", "is an absolute path"),
            ("../secret", "leads out of the process library folder"),
            (
                "templates/../../secret",
                "leads out of the process library folder",
            ),
            ("templates", "is not a regular file"),
        ] {
            let m = refused(&lib, name);
            assert!(m.contains(why), "{name}: {m}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(tmp.path().join("secret"), lib.join("templates/link.hbs"))
                .unwrap();
            std::os::unix::fs::symlink("/dev/zero", lib.join("templates/zero.hbs")).unwrap();
            std::os::unix::fs::symlink(&lib, lib.join("templates/up")).unwrap();
            let m = refused(&lib, "templates/link.hbs");
            assert!(m.contains("is a link to a file outside"), "{m}");
            let m = refused(&lib, "templates/zero.hbs");
            assert!(m.contains("is a link to a file outside"), "{m}");
            // A link that stays inside is followed.
            assert!(read(&lib, "templates/up/templates/ok.hbs").is_ok());
            // A FIFO inside the folder is refused without being opened (an
            // open would wait for a writer and hang the test).
            let fifo = lib.join("templates/fifo.hbs");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let m = refused(&lib, "templates/fifo.hbs");
                assert!(m.contains("is not a regular file"), "{m}");
            }
        }
        std::fs::write(
            lib.join("templates/big.hbs"),
            "x".repeat(MAX_TEMPLATE_FILE as usize + 1),
        )
        .unwrap();
        assert!(refused(&lib, "templates/big.hbs").contains("is larger than 256 KiB"));
        std::fs::write(lib.join("templates/bin.hbs"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(refused(&lib, "templates/bin.hbs").contains("is not UTF-8 text"));
        // None of the refusals quotes a file's contents.
        assert!(!refused(&lib, "../secret").contains("PASSWORD"));
    }
}
