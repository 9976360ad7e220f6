//! The JSON-lines audit file: one record a line, chained by SHA-256, with
//! torn last lines detected and repaired.
//!
//! The file's first line is a header, `{"rollback_audit":1,"created":…}`.
//! Every record line carries `"prev"`: the SHA-256 (lowercase hex) of the
//! bytes of the line before it, without its newline, so the header anchors
//! the chain. A process killed mid-write leaves a last line without a
//! newline (torn); the next [`JsonLinesAuditSink::open`] ends it with a
//! newline and writes a repair line, `{"repaired":"torn line","prev":…}`,
//! chained to the fragment, before any new record.
//!
//! [`verify`] walks the chain and reports the first line that does not
//! follow the one before: an edited, deleted, inserted or reordered line.
//! The chain has no secret: it shows edits made with a text editor, not a
//! rewrite of the whole file by someone who recomputes every hash. Keep the
//! head ([`ChainReport::head`]) elsewhere to detect that, or the loss of the
//! last lines.

use std::fmt;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{AuditRecord, AuditSink};
use crate::{Error, ErrorKind, Result, Timestamp};

/// The format version the header names.
const FORMAT: u32 = 1;
const HEADER_KEY: &str = "rollback_audit";
const REPAIR_KEY: &str = "repaired";

#[derive(serde::Serialize)]
struct LineOut<'a> {
    prev: &'a str,
    #[serde(flatten)]
    record: &'a AuditRecord,
}

#[derive(serde::Deserialize)]
struct LineIn {
    prev: String,
    #[serde(flatten)]
    record: AuditRecord,
}

#[derive(serde::Serialize)]
struct Header {
    rollback_audit: u32,
    created: Timestamp,
}

#[derive(serde::Serialize)]
struct Repair<'a> {
    repaired: &'static str,
    prev: &'a str,
}

fn sha_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The last line of a file of `len` bytes (without its newline), and
/// whether the file ends with a newline. Reads backwards from the end, so
/// opening a long log does not read all of it.
fn last_line(f: &mut std::fs::File, len: u64) -> std::io::Result<(Vec<u8>, bool)> {
    const CHUNK: u64 = 64 * 1024;
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    let mut ends_with_newline = None;
    loop {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0; (pos - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        let newline = *ends_with_newline.get_or_insert(tail.last() == Some(&b'\n'));
        let body = if newline {
            &tail[..tail.len() - 1]
        } else {
            &tail[..]
        };
        if let Some(i) = body.iter().rposition(|b| *b == b'\n') {
            return Ok((body[i + 1..].to_vec(), newline));
        }
        if start == 0 {
            return Ok((body.to_vec(), newline));
        }
        pos = start;
    }
}

/// Open `path` for appending and return the file and the hash the next
/// record chains to: a new file gets its header; a torn tail is ended and
/// repaired.
fn prepare(path: &Path, now: Timestamp) -> std::io::Result<(std::fs::File, String)> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let len = f.metadata()?.len();
    let header = || {
        serde_json::to_vec(&Header {
            rollback_audit: FORMAT,
            created: now,
        })
        .map_err(std::io::Error::other)
    };
    // Each line goes out with its newline in one write, so a kill leaves
    // either a whole line or a fragment.
    let mut out = Vec::new();
    if len == 0 {
        let line = header()?;
        out.extend_from_slice(&line);
        out.push(b'\n');
        f.write_all(&out)?;
        f.flush()?;
        return Ok((f, sha_hex(&line)));
    }
    let (last, ends_with_newline) = last_line(&mut f, len)?;
    if ends_with_newline {
        return Ok((f, sha_hex(&last)));
    }
    // A whole line whose newline did not reach the file: end it and chain
    // to it.
    if serde_json::from_slice::<serde_json::Value>(&last).is_ok() {
        f.write_all(b"\n")?;
        f.flush()?;
        return Ok((f, sha_hex(&last)));
    }
    // A torn tail. When it is the whole file, the header itself was torn:
    // start the chain again with a new header after it.
    let line = if last.len() as u64 == len {
        header()?
    } else {
        serde_json::to_vec(&Repair {
            repaired: "torn line",
            prev: &sha_hex(&last),
        })
        .map_err(std::io::Error::other)?
    };
    out.push(b'\n');
    out.extend_from_slice(&line);
    out.push(b'\n');
    f.write_all(&out)?;
    f.flush()?;
    Ok((f, sha_hex(&line)))
}

#[derive(Debug)]
struct Writer {
    file: tokio::fs::File,
    /// The hash of the last line written: the next record's `prev`.
    prev: String,
    /// A write failed part-way: read the tail again before the next one.
    resync: bool,
}

/// Appends records to a file, one JSON object per line, chained by SHA-256
/// and flushed after each (the format is in the [`crate::audit`] module docs).
/// One writer per file: two sinks appending to one file break its chain.
#[derive(Debug)]
pub struct JsonLinesAuditSink {
    path: PathBuf,
    writer: tokio::sync::Mutex<Writer>,
    sync: bool,
}

fn cannot_open(path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::permanent(format!(
        "cannot open audit log {} for appending",
        path.display()
    ))
    .with_source(e)
}

async fn prepare_async(path: &Path) -> Result<(tokio::fs::File, String)> {
    let owned = path.to_path_buf();
    let now = Timestamp::from(std::time::SystemTime::now());
    let (file, prev) = tokio::task::spawn_blocking(move || prepare(&owned, now))
        .await
        .map_err(|e| cannot_open(path, e))?
        .map_err(|e| cannot_open(path, e))?;
    Ok((tokio::fs::File::from_std(file), prev))
}

impl JsonLinesAuditSink {
    /// Open (or create) `path` for appending. A new file gets its header; a
    /// file whose last line was torn by a crash is repaired first.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (file, prev) = prepare_async(&path).await?;
        Ok(JsonLinesAuditSink {
            path,
            writer: tokio::sync::Mutex::new(Writer {
                file,
                prev,
                resync: false,
            }),
            sync: false,
        })
    }

    /// Also fsync after every record (slower; survives power loss).
    pub fn sync_every_record(mut self, yes: bool) -> Self {
        self.sync = yes;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read every record of a JSON-lines audit log. A torn line (the last
    /// one, or one a later run repaired) is reported in
    /// [`AuditLog::torn_lines`] and skipped; any other line that does not
    /// read is [`ErrorKind::Corrupt`], naming the file and the line. The
    /// chain is not checked here: [`verify`] does that.
    pub fn read(path: impl AsRef<Path>) -> Result<AuditLog> {
        let path = path.as_ref();
        let text = read_file(path)?;
        let mut log = AuditLog::default();
        for line in scan(&text) {
            let why = match line.kind {
                Kind::Record(record) => {
                    log.records.push(*record);
                    continue;
                }
                Kind::Torn if line.repaired || line.last => {
                    log.torn_lines.push(line.number);
                    continue;
                }
                Kind::Header | Kind::Repair => continue,
                Kind::Torn => "not a complete JSON object, and not the last line".to_owned(),
                Kind::Bad(why) => why,
            };
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("audit log {} line {}: {why}", path.display(), line.number),
            ));
        }
        Ok(log)
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::permanent(format!("cannot read audit log {}", path.display())).with_source(e)
    })
}

#[async_trait]
impl AuditSink for JsonLinesAuditSink {
    async fn record(&self, record: &AuditRecord) -> Result<()> {
        let mut w = self.writer.lock().await;
        if w.resync {
            let (file, prev) = prepare_async(&self.path).await?;
            w.file = file;
            w.prev = prev;
            w.resync = false;
        }
        let mut line = serde_json::to_vec(&LineOut {
            prev: &w.prev,
            record,
        })
        .map_err(|e| Error::permanent("cannot serialize an audit record").with_source(e))?;
        let hash = sha_hex(&line);
        line.push(b'\n');
        let sync = self.sync;
        let file = &mut w.file;
        let io = async {
            file.write_all(&line).await?;
            file.flush().await?;
            if sync {
                file.sync_data().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        match io.await {
            Ok(()) => {
                w.prev = hash;
                Ok(())
            }
            Err(e) => {
                w.resync = true;
                Err(Error::transient(format!(
                    "cannot append to audit log {}",
                    self.path.display()
                ))
                .with_source(e))
            }
        }
    }
}

/// What [`JsonLinesAuditSink::read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditLog {
    /// Every record, in file order.
    pub records: Vec<AuditRecord>,
    /// The numbers (from 1) of torn lines: a write a crash cut short. The
    /// record on such a line is lost; the rest of the log reads.
    pub torn_lines: Vec<usize>,
}

/// Where [`verify`] found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The line (from 1) that does not follow the one before it.
    pub line: usize,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Lines in the file.
    pub lines: usize,
    /// Record lines among them.
    pub records: usize,
    /// Torn lines (see [`AuditLog::torn_lines`]); a torn line does not break
    /// the chain.
    pub torn_lines: Vec<usize>,
    /// The hash of the last line: keep it elsewhere to detect a rewrite of
    /// the whole file or lost last lines.
    pub head: Option<String>,
    /// The first break, if any.
    pub broken: Option<ChainBreak>,
}

impl ChainReport {
    /// Whether every line follows the one before it.
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Check the hash chain of a JSON-lines audit log. `Ok` with
/// [`ChainReport::broken`] set when a line was edited, deleted, inserted or
/// moved; `Err` only when the file cannot be read.
pub fn verify(path: impl AsRef<Path>) -> Result<ChainReport> {
    let text = read_file(path.as_ref())?;
    let lines = scan(&text);
    let mut report = ChainReport {
        lines: lines.len(),
        records: 0,
        torn_lines: Vec::new(),
        head: lines.last().map(|l| l.hash.clone()),
        broken: None,
    };
    let mut anchored = false;
    let mut previous: Option<&Line> = None;
    for line in &lines {
        let n = line.number;
        let brk = |reason: String| Some(ChainBreak { line: n, reason });
        let follows = |prev: &str| previous.is_some_and(|p| p.hash == prev);
        let broken = match &line.kind {
            Kind::Header if previous.is_none_or(|p| matches!(p.kind, Kind::Torn) && !anchored) => {
                anchored = true;
                None
            }
            Kind::Header => brk("a second header: lines were added or the file was spliced".into()),
            _ if !anchored && !matches!(line.kind, Kind::Torn) => {
                brk("the log does not start with its header line".into())
            }
            Kind::Record(_) if follows(&line.prev) => {
                report.records += 1;
                None
            }
            Kind::Repair
                if follows(&line.prev)
                    && previous.is_some_and(|p| matches!(p.kind, Kind::Torn)) =>
            {
                None
            }
            Kind::Repair => brk(format!(
                "a repair line that does not follow a torn line {}",
                n - 1
            )),
            Kind::Record(_) => brk(format!(
                "does not follow line {}: a line was changed, removed, added or moved here",
                n - 1
            )),
            Kind::Torn if line.repaired || line.last => {
                report.torn_lines.push(n);
                None
            }
            Kind::Torn => {
                brk("not a complete JSON object, and not repaired: it was changed".into())
            }
            Kind::Bad(why) => brk(why.clone()),
        };
        if broken.is_some() {
            report.broken = broken;
            break;
        }
        previous = Some(line);
    }
    Ok(report)
}

enum Kind {
    Header,
    Repair,
    Record(Box<AuditRecord>),
    /// Not JSON at all: a write cut short, or an edit.
    Torn,
    /// JSON, but not a line of this format.
    Bad(String),
}

struct Line {
    number: usize,
    hash: String,
    prev: String,
    kind: Kind,
    /// The line is the file's last.
    last: bool,
    /// The next line repairs this one.
    repaired: bool,
}

fn classify(bytes: &[u8]) -> (Kind, String) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return (Kind::Torn, String::new());
    };
    let Some(object) = value.as_object() else {
        return (Kind::Bad("not a JSON object".into()), String::new());
    };
    let prev = object
        .get("prev")
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_owned();
    if object.contains_key(HEADER_KEY) {
        return match object.get(HEADER_KEY).and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(FORMAT) => (Kind::Header, prev),
            _ => (
                Kind::Bad(format!(
                    "a header of audit format {}, but this engine reads format {FORMAT}",
                    object[HEADER_KEY]
                )),
                prev,
            ),
        };
    }
    if object.contains_key(REPAIR_KEY) {
        return (Kind::Repair, prev);
    }
    if !object.contains_key("prev") {
        return (
            Kind::Bad("a record without \"prev\", the hash of the line before it".into()),
            prev,
        );
    }
    match serde_json::from_value::<LineIn>(value) {
        Ok(l) => (Kind::Record(Box::new(l.record)), l.prev),
        Err(e) => (Kind::Bad(format!("not an audit record: {e}")), prev),
    }
}

fn scan(text: &[u8]) -> Vec<Line> {
    // Only a last line without its newline can be a write cut short: the
    // sink writes each line with its newline at once.
    let ended = text.ends_with(b"\n");
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    let raw: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let count = raw.len();
    let mut lines: Vec<Line> = Vec::with_capacity(count);
    for (i, bytes) in raw.into_iter().enumerate() {
        let (kind, prev) = classify(bytes);
        if matches!(kind, Kind::Repair | Kind::Header)
            && let Some(before) = lines.last_mut()
            && matches!(before.kind, Kind::Torn)
        {
            before.repaired = true;
        }
        lines.push(Line {
            number: i + 1,
            hash: sha_hex(bytes),
            prev,
            kind,
            last: i + 1 == count && !ended,
            repaired: false,
        });
    }
    lines
}
