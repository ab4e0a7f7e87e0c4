//! The calendar directory: where administrators install new years.
//!
//! The shipped years are compiled in; a directory (default `calendars/`,
//! or `DUBAN_CALENDAR_DIR`) holds `YEAR.yaml` files that add or replace
//! years without a rebuild. Installing is all-or-nothing: the file is
//! validated first, then written to a temporary file in the same directory,
//! synced, and renamed over the target, so a crash or a full disk leaves
//! either the old year or the new one, never a half-written file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Calendar, ScheduleError, YearSchedule};

/// Why the calendar directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CalendarFileError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A year file is invalid.
    #[error("{path}: {source}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        source: ScheduleError,
    },
    /// A file's name does not match the year it declares.
    #[error("{path}: the file declares year {declared}; name it {declared}.yaml")]
    Misnamed {
        /// The file concerned.
        path: PathBuf,
        /// The year inside the file.
        declared: i32,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CalendarFileError + '_ {
    move |source| CalendarFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The shipped years plus every `YEAR.yaml` in `dir` (a missing directory
/// adds nothing). Any invalid file fails the whole load: a calendar that
/// silently skipped a year would count periods wrongly.
pub fn load(dir: &Path) -> Result<Calendar, CalendarFileError> {
    let mut cal = Calendar::builtin();
    if !dir.exists() {
        return Ok(cal);
    }
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let year = read(&path)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if stem != year.year.to_string() {
            return Err(CalendarFileError::Misnamed {
                path,
                declared: year.year,
            });
        }
        cal.insert(year);
    }
    Ok(cal)
}

/// Reads and validates one year file.
pub fn read(path: &Path) -> Result<YearSchedule, CalendarFileError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    YearSchedule::from_yaml(&text).map_err(|source| CalendarFileError::Invalid {
        path: path.to_path_buf(),
        source,
    })
}

/// What [`install`] did.
#[derive(Debug)]
pub struct Installed {
    /// The year installed.
    pub schedule: YearSchedule,
    /// Where it was written.
    pub path: PathBuf,
    /// Whether a schedule for that year existed before (shipped or installed).
    pub replaced: bool,
}

/// Validates `file` and installs it as `dir/YEAR.yaml` atomically.
pub fn install(dir: &Path, file: &Path) -> Result<Installed, CalendarFileError> {
    let text = fs::read_to_string(file).map_err(io(file))?;
    let schedule = YearSchedule::from_yaml(&text).map_err(|source| CalendarFileError::Invalid {
        path: file.to_path_buf(),
        source,
    })?;
    let replaced = load(dir)?.year(schedule.year).is_some();
    fs::create_dir_all(dir).map_err(io(dir))?;
    let target = dir.join(format!("{}.yaml", schedule.year));
    let tmp = dir.join(format!(".{}.yaml.tmp", schedule.year));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &target)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(CalendarFileError::Io {
            path: target,
            source: e,
        });
    }
    Ok(Installed {
        schedule,
        path: target,
        replaced,
    })
}
