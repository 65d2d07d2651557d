// SPDX-License-Identifier: MPL-2.0
//! Counting VPU sessions in the MPP kernel driver's session listing.
//!
//! The driver prints one record per open session: an optional iova dump, a
//! `session: pid=<tid> index=<n>` line, a ` device: <node>.<block>` line, a
//! ` memory:` line and, for encoders, a table. The word "session" appears about
//! three times per record, so only `session: pid=` lines start a record.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the kernel lists sessions, in the order they are tried when the
/// `session-file` property is empty (under `EDGEGUARD_ROOT`: see
/// `default_session_files`).
pub const DEFAULT_SESSION_FILES: [&str; 3] = [
    "/proc/mpp_service/sessions-summary",
    // The name on older kernels (reported on an RV1126).
    "/proc/mpp_service/session_summary",
    "/sys/kernel/debug/mpp_service/session",
];

/// A listing larger than this is not a session listing (a board holds a few
/// dozen sessions at most); reading stops there so a wrong path cannot make the
/// decision take seconds or exhaust memory.
pub const MAX_LISTING_BYTES: u64 = 4 * 1024 * 1024;

/// Which hardware block a session runs on, from the device line's block name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionKind {
    Encoder,
    Decoder,
    Jpeg,
    /// A codec session that may be an encoder or a decoder: sources that
    /// see who holds an engine but not what for (DRM clients, V4L2 holders).
    Codec,
    /// A record with no device line, or a block this parser does not know.
    Other,
}

impl SessionKind {
    pub fn from_device(device: &str) -> Self {
        // The device is "<address>.<block>", e.g. "fdbd0000.rkvenc-core".
        let block = device.rsplit_once('.').map_or(device, |(_, b)| b);
        let block = block.to_ascii_lowercase();
        // RK3588 blocks: rkvenc, vepu (encoders); rkvdec, vdpu, av1d
        // (decoders); jpegd/jpege; iep and others are not codecs.
        if block.contains("jpeg") {
            SessionKind::Jpeg
        } else if block.contains("enc") || block.contains("vepu") {
            SessionKind::Encoder
        } else if block.contains("dec") || block.contains("vdpu") || block.starts_with("av1d") {
            SessionKind::Decoder
        } else {
            SessionKind::Other
        }
    }
}

/// One session of a listing: who opened it and on which block.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionRecord {
    /// The opening thread's id (the kernel prints the thread, not the process).
    pub tid: u32,
    pub index: u64,
    /// The device line, e.g. `fdbd0000.rkvenc-core` (empty when missing).
    pub device: String,
}

/// Every session record of a listing with its `pid=`, `index=` and device.
/// A record whose `pid=` is not a number is skipped: it cannot be attributed.
pub fn parse_records(text: &str) -> Vec<SessionRecord> {
    let mut records: Vec<SessionRecord> = Vec::new();
    let mut in_record = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line
            .strip_prefix("session: pid=")
            .or_else(|| line.strip_prefix("session:pid="))
        {
            let mut fields = rest.split_whitespace();
            let tid = fields.next().and_then(|t| t.parse().ok());
            let index = fields
                .find_map(|f| f.strip_prefix("index="))
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            in_record = tid.is_some();
            if let Some(tid) = tid {
                records.push(SessionRecord {
                    tid,
                    index,
                    device: String::new(),
                });
            }
        } else if let Some(device) = line.strip_prefix("device:")
            && in_record
            && let Some(record) = records.last_mut()
        {
            record.device = device.trim().to_string();
            in_record = false;
        }
    }
    records
}

/// One session of a listing with the encoder load it declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLoad {
    pub record: SessionRecord,
    pub kind: SessionKind,
    /// width x height x input fps from the record's table; None when the
    /// record has no table (a decoder, or an encoder whose userspace sent no
    /// codec info yet).
    pub pixel_rate: Option<u64>,
}

/// The columns of an encoder table that give its load.
#[derive(Debug, Clone, Copy, Default)]
struct LoadColumns {
    width: usize,
    height: usize,
    fps: usize,
}

impl LoadColumns {
    /// Finds the columns in a header row such as `| session|  device|   width|...`.
    fn from_header(cells: &[&str]) -> Option<Self> {
        let find = |name: &str| cells.iter().position(|c| c.eq_ignore_ascii_case(name));
        Some(LoadColumns {
            width: find("width")?,
            height: find("height")?,
            // fps_in is the rate frames arrive at, what the encoder must keep up with.
            fps: find("fps_in")
                .or_else(|| find("fps_out"))
                .or_else(|| find("fps"))?,
        })
    }

    fn pixel_rate(&self, cells: &[&str]) -> Option<u64> {
        let number = |i: usize| cells.get(i)?.parse::<f64>().ok().filter(|v| *v >= 0.0);
        let rate = number(self.width)? * number(self.height)? * number(self.fps)?;
        Some(rate.ceil() as u64)
    }
}

fn table_cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// Every session record of a listing with its kind and, for a record with an
/// encoder table, its pixel rate. Records are found as `parse_records` finds them.
pub fn parse_loads(text: &str) -> Vec<SessionLoad> {
    let mut loads: Vec<SessionLoad> = Vec::new();
    let mut columns: Option<LoadColumns> = None;
    // Whether the lines being read belong to the last load (not to a record
    // that was skipped, nor to the text before the first record).
    let mut in_record = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("session: pid=") || line.starts_with("session:pid=") {
            columns = None;
            // One record per session line, parsed as parse_records does.
            let record = parse_records(line).pop();
            in_record = record.is_some();
            loads.extend(record.map(|record| SessionLoad {
                record,
                kind: SessionKind::Other,
                pixel_rate: None,
            }));
            continue;
        }
        let Some(load) = loads.last_mut().filter(|_| in_record) else {
            continue;
        };
        if let Some(device) = line
            .strip_prefix("device:")
            .filter(|_| load.record.device.is_empty())
        {
            load.record.device = device.trim().to_string();
            load.kind = SessionKind::from_device(&load.record.device);
        } else if let Some(cells) = table_cells(line) {
            match columns {
                None => columns = LoadColumns::from_header(&cells),
                Some(c) if load.pixel_rate.is_none() => load.pixel_rate = c.pixel_rate(&cells),
                Some(_) => (),
            }
        }
    }
    loads
}

/// Reads the whole listing as text, at most `MAX_LISTING_BYTES` of it.
///
/// The path comes from the user: it is opened without blocking (a FIFO would
/// otherwise hang the open until a writer came, with the machine-wide
/// decision lock held) and only a regular file is read, which is what procfs
/// and debugfs entries are.
pub fn read_text(path: &Path) -> Result<String, ListingError> {
    let error = |reason: String| ListingError {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| error(e.to_string()))?;
    let file_type = file
        .metadata()
        .map_err(|e| error(e.to_string()))?
        .file_type();
    if !file_type.is_file() {
        return Err(error(format!(
            "not a regular file or procfs/debugfs entry (a {})",
            describe(file_type)
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_LISTING_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| error(e.to_string()))?;
    // procfs text is ASCII; a stray byte must not hide the records around it.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn describe(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "directory"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

/// The default listing paths under `EDGEGUARD_ROOT`, in the order they are
/// tried.
pub fn default_session_files() -> Vec<PathBuf> {
    let root = super::root::root();
    DEFAULT_SESSION_FILES
        .iter()
        .map(|p| super::root::under(&root, p))
        .collect()
}

/// Reads the configured listing (used as given), or the first default one
/// under `EDGEGUARD_ROOT` that can be read; says which file was read.
pub fn read_first_text(configured: Option<&Path>) -> Result<(PathBuf, String), ListingError> {
    if let Some(path) = configured {
        return read_text(path).map(|t| (path.to_path_buf(), t));
    }
    let mut last_error = None;
    for path in default_session_files() {
        match read_text(&path) {
            Ok(text) => return Ok((path, text)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.expect("there is at least one default session file"))
}

/// Why a listing could not be read.
#[derive(Debug)]
pub struct ListingError {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for ListingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../tests/data/sessions-summary.sample");

    fn kinds(text: &str) -> Vec<SessionKind> {
        parse_loads(text).into_iter().map(|l| l.kind).collect()
    }

    fn count_of(text: &str, kind: SessionKind) -> usize {
        kinds(text).into_iter().filter(|k| *k == kind).count()
    }

    #[test]
    fn sample_has_two_encoders_and_one_decoder() {
        assert_eq!(
            kinds(SAMPLE),
            vec![
                SessionKind::Encoder,
                SessionKind::Encoder,
                SessionKind::Decoder
            ]
        );
        // The naive count the field reports warn about is far off.
        assert!(SAMPLE.matches("session").count() > 3);
    }

    #[test]
    fn empty_listing_has_no_sessions() {
        assert!(parse_loads("").is_empty());
        assert!(parse_loads("\n\n   \n").is_empty());
    }

    #[test]
    fn truncated_record_still_counts() {
        // The file changed while it was read: the last record lost its device line.
        let cut = SAMPLE.rfind(" device:").unwrap();
        let text = &SAMPLE[..cut];
        assert_eq!(parse_loads(text).len(), 3);
        assert_eq!(count_of(text, SessionKind::Encoder), 2);
        assert_eq!(count_of(text, SessionKind::Other), 1);
    }

    #[test]
    fn cut_inside_a_session_line_does_not_count_it() {
        let cut = SAMPLE.rfind("session: pid=").unwrap() + "sess".len();
        assert_eq!(parse_loads(&SAMPLE[..cut]).len(), 2);
    }

    #[test]
    fn unknown_lines_and_garbage_are_ignored() {
        let text = format!(
            "garbage line\n\u{0}\u{1}binary\nsession iova range dump:\n{SAMPLE}\nsessions: many\nsession summary v2\n| session|  RKVENC|\n"
        );
        assert_eq!(parse_loads(&text).len(), 3);
    }

    #[test]
    fn jpeg_and_unknown_blocks_are_classified() {
        let text = "session: pid=1 index=1\n device: fdb90000.jpegd\n\
                    session: pid=2 index=2\n device: fdb50000.vepu\n\
                    session: pid=3 index=3\n device: fdc70000.av1d\n\
                    session: pid=4 index=4\n device: fdb51000.iep\n";
        assert_eq!(
            kinds(text),
            vec![
                SessionKind::Jpeg,
                SessionKind::Encoder,
                SessionKind::Decoder,
                SessionKind::Other
            ]
        );
    }

    #[test]
    fn debugfs_style_without_space_counts() {
        assert_eq!(parse_loads("session:pid=10 index=3\n").len(), 1);
    }

    #[test]
    fn huge_listing_counts_every_record() {
        let text = SAMPLE.repeat(2000);
        assert_eq!(parse_loads(&text).len(), 6000);
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgeguard-sessions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn reading_stops_at_the_size_bound() {
        let path = temp_path("huge");
        let record = "session: pid=1 index=1\n device: a.rkvenc\n";
        let records = (MAX_LISTING_BYTES as usize / record.len()) + 100;
        std::fs::write(&path, record.repeat(records)).unwrap();
        let total = parse_loads(&read_text(&path).unwrap()).len();
        // Whole records up to the bound, plus at most the one cut by it.
        let whole = MAX_LISTING_BYTES as usize / record.len();
        assert!(total == whole || total == whole + 1, "{total} vs {whole}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let path = temp_path("fifo");
        let _ = std::fs::remove_file(&path);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c_path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // A blocking open would wait here for a writer that never comes:
        // bounded, so that a hang fails the test.
        let (tx, rx) = std::sync::mpsc::channel();
        let fifo = path.clone();
        std::thread::spawn(move || tx.send(read_text(&fifo)).unwrap());
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("reading a FIFO hung")
            .unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert!(err.to_string().contains("fifo"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_directory_or_device_is_refused() {
        let err = read_text(&std::env::temp_dir()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let err = read_text(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }

    #[test]
    fn procfs_entries_are_read() {
        let text = read_text(Path::new("/proc/self/status")).unwrap();
        assert!(text.contains("Tgid:"));
    }

    #[test]
    fn random_listings_never_panic_and_never_overcount() {
        let mut rng = crate::fuzz::Rng::new(0x5e55_1075);
        let tokens = [
            "session: pid=",
            "session:pid=",
            " device: ",
            "rkvenc",
            "rkvdec",
            "jpegd",
            "\n",
            "|",
            "session",
        ];
        let cases = crate::fuzz::cases(20_000);
        let started = std::time::Instant::now();
        for _ in 0..cases {
            let data = rng.mutate(SAMPLE.as_bytes(), &tokens);
            let text = String::from_utf8_lossy(&data);
            let loads = parse_loads(&text);
            // One load per record line whose pid is a number, never more.
            let lines = text
                .lines()
                .filter_map(|l| {
                    let l = l.trim();
                    l.strip_prefix("session: pid=")
                        .or_else(|| l.strip_prefix("session:pid="))
                })
                .filter(|rest| {
                    rest.split_whitespace()
                        .next()
                        .is_some_and(|t| t.parse::<u32>().is_ok())
                })
                .count();
            assert_eq!(loads.len(), lines, "{text:?}");
        }
        crate::fuzz::report("session listing", cases, started);
    }

    #[test]
    fn records_name_thread_index_and_device() {
        let records = parse_records(SAMPLE);
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            SessionRecord {
                tid: 1954,
                index: 54,
                device: "fdbd0000.rkvenc-core".into()
            }
        );
        assert_eq!(records[2].device, "fdc38100.rkvdec-core");
    }

    #[test]
    fn a_record_without_a_numeric_pid_is_skipped() {
        let text = "session: pid=x index=1\n device: a.rkvenc\n\
                    session:pid=7 index=2\n device: b.rkvdec\n";
        let records = parse_records(text);
        assert_eq!(records.len(), 1);
        assert_eq!((records[0].tid, records[0].index), (7, 2));
        assert_eq!(records[0].device, "b.rkvdec");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = read_text(Path::new("/nonexistent/sessions-summary")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sessions-summary"));
    }

    #[test]
    fn loads_carry_the_encoder_tables_pixel_rate() {
        let loads = parse_loads(SAMPLE);
        let summary: Vec<_> = loads
            .iter()
            .map(|l| (l.record.tid, l.kind, l.pixel_rate))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1954, SessionKind::Encoder, Some(3840 * 2160 * 60)),
                (2011, SessionKind::Encoder, Some(1920 * 1080 * 30)),
                (2040, SessionKind::Decoder, None),
            ]
        );
        // The same records as parse_records.
        let records: Vec<_> = loads.into_iter().map(|l| l.record).collect();
        assert_eq!(records, parse_records(SAMPLE));
    }

    #[test]
    fn a_table_without_numbers_or_columns_has_no_rate() {
        let text = "session: pid=1 index=1\n device: a.rkvenc\n\
                    | session|   width|  height|  fps_in|\n\
                    |       1|       ?|    1080|      30|\n\
                    session: pid=2 index=2\n device: b.rkvenc\n\
                    | session|  device|\n|       2|  RKVENC|\n\
                    session: pid=3 index=3\n device: c.rkvenc\n\
                    | width| height| fps_calc| fps_in|\n| 640| 480| 29.97| 25|\n";
        let rates: Vec<_> = parse_loads(text).iter().map(|l| l.pixel_rate).collect();
        assert_eq!(rates, vec![None, None, Some(640 * 480 * 25)]);
    }

    #[test]
    fn random_listings_give_as_many_loads_as_records() {
        let mut rng = crate::fuzz::Rng::new(0x0001_0ad5);
        let tokens = [
            "session: pid=",
            "|",
            "width",
            "fps_in",
            "\n",
            " device: ",
            "rkvenc",
        ];
        for _ in 0..crate::fuzz::cases(5_000) {
            let data = rng.mutate(SAMPLE.as_bytes(), &tokens);
            let text = String::from_utf8_lossy(&data);
            assert_eq!(
                parse_loads(&text).len(),
                parse_records(&text).len(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn the_older_kernels_listing_name_is_probed() {
        assert!(DEFAULT_SESSION_FILES.contains(&"/proc/mpp_service/session_summary"));
    }
}
