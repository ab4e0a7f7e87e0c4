//! Attachments an agency gives with its answer (证明材料): checked, stored
//! beside the instance's documents, and only ever served back as a
//! download (issue 14).
//!
//! - **Limits.** At most [`MAX_FILES`] files of at most [`MAX_FILE_BYTES`]
//!   each. A file's kind is read from its first bytes and must agree with
//!   its name's extension: PDF, JPEG, PNG, or an Office/OFD document (a zip
//!   named `.docx`, `.xlsx` or `.ofd`). Anything else is refused with the
//!   reason, before anything is stored.
//! - **Storage.** `DIR/INSTANCE/attachments/TASK-N.EXT`, where `DIR` is the
//!   documents directory (`[documents] dir`, else `documents/` beside the
//!   database); the name the agency gave is kept only in the manifest
//!   `TASK.json`, never in a path. Each file is written to a temporary file
//!   and renamed into place, the manifest last: a crash leaves no manifest
//!   naming a file that is not whole.
//! - **All or nothing.** The files are stored before the answer is applied;
//!   if the engine refuses the answer they are removed again, so a refused
//!   answer leaves nothing behind.
//! - **Served back** with `Content-Type: application/octet-stream`,
//!   `Content-Disposition: attachment`, `nosniff` and a sandboxing CSP, so a
//!   browser never renders an upload as a page.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The most files one answer carries.
pub const MAX_FILES: usize = 5;
/// The largest file accepted.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024;
/// The largest request body of an answer with its files.
pub const MAX_UPLOAD_BYTES: usize = MAX_FILES * MAX_FILE_BYTES + crate::MAX_FORM_BYTES;

/// The kinds accepted: extension, the bytes a file of it begins with, and
/// what the agency is told it may send.
const KINDS: [(&str, &[u8]); 7] = [
    ("pdf", b"%PDF-"),
    ("jpg", b"\xFF\xD8\xFF"),
    ("jpeg", b"\xFF\xD8\xFF"),
    ("png", b"\x89PNG\r\n\x1a\n"),
    ("docx", b"PK\x03\x04"),
    ("xlsx", b"PK\x03\x04"),
    ("ofd", b"PK\x03\x04"),
];

/// What the form tells the agency it may attach.
pub const ACCEPTED: &str = "PDF、JPG、PNG、DOCX、XLSX、OFD";

/// A file received with an answer, not yet stored.
#[derive(Debug)]
pub struct Upload {
    /// The name the sender gave.
    pub name: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A stored attachment, as the manifest lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stored {
    /// Its number within the answer, from 1.
    pub n: usize,
    /// The name the sender gave (shown and offered as the download's name).
    pub name: String,
    /// The extension it is stored under.
    pub ext: String,
    /// Its size in bytes.
    pub size: usize,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// Why a file is refused, in Chinese for the agency.
pub fn check(u: &Upload) -> Result<&'static str, String> {
    let shown = display_name(&u.name);
    if u.bytes.is_empty() {
        return Err(format!("附件“{shown}”是空文件"));
    }
    if u.bytes.len() > MAX_FILE_BYTES {
        return Err(format!(
            "附件“{shown}”超过{}MB",
            MAX_FILE_BYTES / 1024 / 1024
        ));
    }
    let ext = u
        .name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let Some((ext, magic)) = KINDS.iter().find(|(e, _)| *e == ext) else {
        return Err(format!("附件“{shown}”的格式不受理，仅限{ACCEPTED}"));
    };
    if !u.bytes.starts_with(magic) {
        return Err(format!(
            "附件“{shown}”的内容与其扩展名（.{ext}）不符，请上传原文件"
        ));
    }
    Ok(ext)
}

/// The sender's file name as shown: its last path part, without control
/// characters, at most 100 characters.
pub fn display_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = last.chars().filter(|c| !c.is_control()).take(100).collect();
    if clean.trim().is_empty() {
        "附件".into()
    } else {
        clean
    }
}

fn dir_of(root: &Path, instance: &str) -> PathBuf {
    root.join(instance).join("attachments")
}

fn manifest_path(root: &Path, instance: &str, task: &str) -> PathBuf {
    dir_of(root, instance).join(format!("{task}.json"))
}

fn file_path(root: &Path, instance: &str, task: &str, s: &Stored) -> PathBuf {
    dir_of(root, instance).join(format!("{task}-{}.{}", s.n, s.ext))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("an attachment path has a directory");
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores the checked `uploads` of `task`; on any failure removes what it
/// wrote and returns the error.
pub fn store(
    root: &Path,
    instance: &str,
    task: &str,
    uploads: &[(Upload, &'static str)],
) -> std::io::Result<Vec<Stored>> {
    let mut stored = Vec::new();
    let result = (|| {
        for (i, (u, ext)) in uploads.iter().enumerate() {
            let s = Stored {
                n: i + 1,
                name: display_name(&u.name),
                ext: (*ext).to_string(),
                size: u.bytes.len(),
                sha256: hex(&sha2::Sha256::digest(&u.bytes)),
            };
            write_atomically(&file_path(root, instance, task, &s), &u.bytes)?;
            stored.push(s);
        }
        let json = serde_json::to_vec_pretty(&stored).expect("a manifest serialises");
        write_atomically(&manifest_path(root, instance, task), &json)
    })();
    match result {
        Ok(()) => Ok(stored),
        Err(e) => {
            remove(root, instance, task, &stored);
            Err(e)
        }
    }
}

/// Removes the attachments `stored` of `task` and its manifest (an answer
/// the engine refused).
pub fn remove(root: &Path, instance: &str, task: &str, stored: &[Stored]) {
    for s in stored {
        let _ = std::fs::remove_file(file_path(root, instance, task, s));
    }
    let _ = std::fs::remove_file(manifest_path(root, instance, task));
}

/// The attachments stored for `task` (none without a manifest).
pub fn list(root: &Path, instance: &str, task: &str) -> Vec<Stored> {
    std::fs::read(manifest_path(root, instance, task))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The bytes of attachment `n` of `task`, with its manifest entry.
pub fn read(root: &Path, instance: &str, task: &str, n: usize) -> Option<(Stored, Vec<u8>)> {
    let s = list(root, instance, task).into_iter().find(|s| s.n == n)?;
    let bytes = std::fs::read(file_path(root, instance, task, &s)).ok()?;
    Some((s, bytes))
}

/// A download of `s`: never rendered by the browser.
pub fn download(s: &Stored, bytes: Vec<u8>) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    use axum::response::IntoResponse as _;
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // An ASCII fallback name and the UTF-8 one (RFC 6266 / 8187).
    let encoded: String = s
        .name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"attachment-{}.{}\"; filename*=UTF-8''{encoded}",
        s.n, s.ext
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, bytes: &[u8]) -> Upload {
        Upload {
            name: name.into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_file_is_taken_only_when_its_bytes_agree_with_its_name() {
        assert_eq!(check(&up("整改报告.pdf", b"%PDF-1.7 ...")), Ok("pdf"));
        assert_eq!(check(&up("照片.JPG", b"\xFF\xD8\xFF\xE0..")), Ok("jpg"));
        let html = check(&up("a.pdf", b"<html><script>")).unwrap_err();
        assert!(html.contains("不符"), "{html}");
        let exe = check(&up("a.html", b"<html>")).unwrap_err();
        assert!(exe.contains("格式不受理"), "{exe}");
        assert!(check(&up("a.pdf", b"")).unwrap_err().contains("空文件"));
        let big = vec![b'%'; MAX_FILE_BYTES + 1];
        assert!(check(&up("a.pdf", &big)).unwrap_err().contains("超过"));
    }

    #[test]
    fn a_path_in_a_file_name_is_never_followed() {
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("C:\\x\\报告.pdf"), "报告.pdf");
        assert_eq!(display_name("\u{0}\n"), "附件");
    }

    #[test]
    fn stored_files_are_listed_read_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let u = [
            (up("a.pdf", b"%PDF-1"), "pdf"),
            (up("b.png", b"\x89PNG\r\n\x1a\nx"), "png"),
        ];
        let s = store(d.path(), "i1", "i1.2", &u).unwrap();
        assert_eq!(list(d.path(), "i1", "i1.2"), s);
        let (one, bytes) = read(d.path(), "i1", "i1.2", 2).unwrap();
        assert_eq!((one.name.as_str(), bytes.len()), ("b.png", 9));
        remove(d.path(), "i1", "i1.2", &s);
        assert!(list(d.path(), "i1", "i1.2").is_empty());
        assert_eq!(
            std::fs::read_dir(d.path().join("i1/attachments"))
                .unwrap()
                .count(),
            0
        );
    }
}
