//! The alert outbox: notices to deliver (Slack, Kafka topics), kept in a durable
//! append-only log so that a crash neither loses a notice nor delivers one twice. On local
//! disk the log is one fsynced file, `outbox.log`; objects cannot be appended to, so on an
//! object store it is a base object `outbox-<G>.log` and one object `outbox-<G>-<N>.seg` per
//! append, folded into the next base when the log is compacted (see [`LogFile`]).
//!
//! One record per line, `<crc32 of the JSON, 8 hex digits> <JSON>\n`:
//!
//! * `{"op":"add","id":..,"dest":..,"at_ms":..,"payload":..}`: something to deliver;
//! * `{"op":"done","id":..,"outcome":"delivered"|"rejected: ..","at_ms":..}`: delivered or
//!   given up on.
//!
//! Ids are remembered after delivery (for [`DONE_RETENTION_MS`]): a replay after a crash adds
//! the same ids again, and they must not go out twice. The log is rewritten (compacted) at
//! open and whenever it grows past [`COMPACT_BYTES`].

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use inferwatch_schemas::time::now_ms;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{io_err, Result, SinkError};
use crate::store::Store;

/// The outbox directory under a data directory.
pub const OUTBOX_DIR: &str = "_outbox";
/// The log's file name in the outbox directory.
pub const LOG_FILE: &str = "outbox.log";
/// The log is compacted when it grows past this (or past twice its compacted size).
pub const COMPACT_BYTES: u64 = 4 << 20;
/// How long delivered ids are remembered: longer than any replay can reach back.
pub const DONE_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// One thing to deliver to one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Deterministic (a replay makes the same id): the outbox delivers each id once.
    pub id: String,
    /// Which delivery loop takes it, e.g. `slack`.
    pub dest: String,
    /// When it was made, ms since the Unix epoch; decides how long its id is remembered.
    pub at_ms: i64,
    /// What to send, as the destination wants it.
    pub payload: Value,
}

/// A record as read back.
#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Add {
        id: String,
        dest: String,
        at_ms: i64,
        payload: Value,
    },
    Done {
        id: String,
        outcome: String,
        #[serde(default)]
        at_ms: Option<i64>,
    },
}

/// A record as written (borrowed: payloads are not copied to write them).
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum RecordOut<'a> {
    Add {
        id: &'a str,
        dest: &'a str,
        at_ms: i64,
        payload: &'a Value,
    },
    Done {
        id: &'a str,
        outcome: &'a str,
        at_ms: i64,
    },
}

/// Appends the `add` record of `e` to `buf`.
fn encode_add(e: &Entry, buf: &mut Vec<u8>) {
    encode(
        &RecordOut::Add {
            id: &e.id,
            dest: &e.dest,
            at_ms: e.at_ms,
            payload: &e.payload,
        },
        buf,
    );
}

fn encode(rec: &RecordOut<'_>, out: &mut Vec<u8>) {
    let json = serde_json::to_vec(rec).expect("outbox records serialize");
    out.extend_from_slice(format!("{:08x} ", crc32fast::hash(&json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
}

/// Why a line could not be read, or `Ok` with its record.
fn decode(line: &[u8]) -> std::result::Result<Record, String> {
    if line.len() < 10 || line[8] != b' ' {
        return Err("not `<crc32> <json>`".into());
    }
    let crc = std::str::from_utf8(&line[..8])
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or("the checksum is not 8 hex digits")?;
    let json = &line[9..];
    if crc32fast::hash(json) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(json).map_err(|e| format!("unreadable record: {e}"))
}

struct Done {
    at_ms: i64,
    outcome: String,
}

enum Known {
    /// Pending under (dest, sequence number).
    Pending(String, u64),
    Done(Done),
}

/// Where the log's bytes live.
enum LogFile {
    /// One file, appended to and fsynced.
    Local { path: PathBuf, file: File },
    /// Generation `gen`'s base object and `segs` appended objects after it.
    Object { store: Store, gen: u64, segs: u64 },
}

impl LogFile {
    /// Opens the log in `store` and reads all of it.
    fn open(store: &Store) -> Result<(LogFile, Vec<u8>)> {
        if let Some(dir) = store.local_dir() {
            std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
            let path = dir.join(LOG_FILE);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io_err("reading", &path)(e)),
            };
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err("opening", &path))?;
            return Ok((LogFile::Local { path, file }, bytes));
        }
        // Bases `outbox-<G>.log` and segments `outbox-<G>-<N>.seg`: the newest base wins, and
        // only its own segments follow it (older ones are left by a compaction cut short).
        let keys = store.list("")?;
        let parse = |k: &str| -> Option<(u64, Option<u64>)> {
            let rest = k.strip_prefix("outbox-")?;
            if let Some(g) = rest.strip_suffix(".log") {
                return Some((g.parse().ok()?, None));
            }
            let (g, n) = rest.strip_suffix(".seg")?.split_once('-')?;
            Some((g.parse().ok()?, Some(n.parse().ok()?)))
        };
        let parsed: Vec<(u64, Option<u64>, &String)> = keys
            .iter()
            .filter_map(|k| parse(k).map(|(g, n)| (g, n, k)))
            .collect();
        let gen = parsed
            .iter()
            .filter(|(_, n, _)| n.is_none())
            .map(|(g, ..)| *g)
            .max();
        let gen = gen.unwrap_or(0);
        let mut bytes = store
            .get(&format!("outbox-{gen:06}.log"))?
            .unwrap_or_default();
        let mut segs: Vec<(u64, &String)> = parsed
            .iter()
            .filter(|(g, n, _)| *g == gen && n.is_some())
            .map(|(_, n, k)| (n.expect("a segment"), *k))
            .collect();
        segs.sort();
        for (_, k) in &segs {
            bytes.extend(store.get(k)?.unwrap_or_default());
        }
        let segs = segs.last().map_or(0, |(n, _)| *n);
        Ok((
            LogFile::Object {
                store: store.clone(),
                gen,
                segs,
            },
            bytes,
        ))
    }

    fn name(&self) -> String {
        match self {
            LogFile::Local { path, .. } => path.display().to_string(),
            LogFile::Object { store, .. } => format!("{}/outbox", store.display()),
        }
    }

    /// Appends `buf` durably; on failure a local log is cut back to `len` so no half record
    /// stays.
    fn append(&mut self, buf: &[u8], len: u64) -> Result<()> {
        match self {
            LogFile::Local { path, file } => {
                let res = file.write_all(buf).and_then(|_| file.sync_data());
                if let Err(e) = res {
                    let _ = file.set_len(len);
                    return Err(io_err("appending to", path.as_path())(e));
                }
                Ok(())
            }
            LogFile::Object { store, gen, segs } => {
                let key = format!("outbox-{gen:06}-{:09}.seg", *segs + 1);
                if !store.put_new(&key, buf.to_vec())? {
                    return Err(SinkError::Outbox {
                        path: format!("{}/{key}", store.display()).into(),
                        reason: "written by another processor at the same time; only the \
                                 owner of a partition writes its outbox"
                            .into(),
                    });
                }
                *segs += 1;
                Ok(())
            }
        }
    }

    /// Cuts a torn last record off a local log.
    fn truncate(&mut self, len: u64) -> Result<()> {
        if let LogFile::Local { path, file } = self {
            file.set_len(len)
                .and_then(|_| file.sync_data())
                .map_err(io_err("truncating", path.as_path()))?;
        }
        Ok(())
    }

    /// Replaces the whole log with `buf`, atomically.
    fn rewrite(&mut self, buf: Vec<u8>) -> Result<()> {
        match self {
            LogFile::Local { path, file } => {
                let dir = path
                    .parent()
                    .expect("the log lives in a directory")
                    .to_path_buf();
                Store::local(&dir).put(LOG_FILE, buf)?;
                *file = OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .map_err(io_err("opening", path.as_path()))?;
                Ok(())
            }
            LogFile::Object { store, gen, segs } => {
                let next = *gen + 1;
                store.put(&format!("outbox-{next:06}.log"), buf)?;
                let old = format!("outbox-{:06}", *gen);
                for k in store.list("")? {
                    if k.starts_with(&old) {
                        store.delete(&k)?;
                    }
                }
                (*gen, *segs) = (next, 0);
                Ok(())
            }
        }
    }
}

/// The outbox of one partition's notices. One writer at a time: the partition's owner.
pub struct Outbox {
    log: LogFile,
    /// Bytes in the log.
    len: u64,
    /// The log is compacted when `len` passes this.
    compact_at: u64,
    /// Add order.
    seq: u64,
    /// Pending entries per destination, oldest first.
    queues: HashMap<String, BTreeMap<u64, Entry>>,
    pending: usize,
    ids: HashMap<String, Known>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("log", &self.log.name())
            .field("pending", &self.pending)
            .field("ids", &self.ids.len())
            .finish()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `store` and replays its log. A torn last record (a
    /// crash in the middle of a write) is dropped; damage before intact records is an error.
    pub fn open(store: &Store) -> Result<Outbox> {
        let (log, bytes) = LogFile::open(store)?;
        let mut ob = Outbox {
            log,
            len: 0,
            compact_at: COMPACT_BYTES,
            seq: 0,
            queues: HashMap::new(),
            pending: 0,
            ids: HashMap::new(),
        };
        ob.replay(&bytes)?;
        ob.compact()?;
        if ob.pending > 0 {
            tracing::info!(
                "alert outbox: {} notices still to deliver from the last run",
                ob.pending
            );
        }
        Ok(ob)
    }

    fn replay(&mut self, bytes: &[u8]) -> Result<()> {
        let mut pos = 0;
        let mut line_no = 0;
        while pos < bytes.len() {
            line_no += 1;
            let (line, next) = match bytes[pos..].iter().position(|&b| b == b'\n') {
                Some(n) => (&bytes[pos..pos + n], Some(pos + n + 1)),
                None => (&bytes[pos..], None),
            };
            let rec = match next {
                None => Err("no newline at the end".to_string()),
                Some(_) => decode(line),
            };
            match rec {
                Ok(rec) => self.apply(rec),
                Err(why) => {
                    // Torn tail: nothing intact follows. Otherwise the file is damaged.
                    let rest = next.map_or(&[][..], |n| &bytes[n..]);
                    let intact_after = rest
                        .split(|&b| b == b'\n')
                        .zip(rest.split(|&b| b == b'\n').skip(1))
                        .any(|(l, _)| decode(l).is_ok());
                    if intact_after {
                        return Err(SinkError::Outbox {
                            path: self.log.name().into(),
                            reason: format!(
                                "line {line_no} (byte {pos}) is damaged ({why}) and intact \
                                 records follow it; move the file away to start with an empty \
                                 outbox (notices pending in it will then not be delivered), \
                                 or delete the damaged line"
                            ),
                        });
                    }
                    tracing::warn!(
                        "alert outbox {}: dropping a torn record at the end (line {line_no}, {why}), \
                         left by a crash in the middle of a write",
                        self.log.name()
                    );
                    self.log.truncate(pos as u64)?;
                    break;
                }
            }
            pos = next.unwrap_or(bytes.len());
        }
        Ok(())
    }

    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Add {
                id,
                dest,
                at_ms,
                payload,
            } => {
                if !self.ids.contains_key(&id) {
                    self.insert(Entry {
                        id,
                        dest,
                        at_ms,
                        payload,
                    });
                }
            }
            Record::Done { id, outcome, at_ms } => {
                let at_ms = match self.take_pending(&id) {
                    Some(e) => e.at_ms,
                    None => match self.ids.get(&id) {
                        Some(Known::Done(d)) => d.at_ms,
                        _ => at_ms.unwrap_or_else(now_ms),
                    },
                };
                self.ids.insert(id, Known::Done(Done { at_ms, outcome }));
            }
        }
    }

    fn insert(&mut self, e: Entry) {
        self.seq += 1;
        self.ids
            .insert(e.id.clone(), Known::Pending(e.dest.clone(), self.seq));
        self.queues
            .entry(e.dest.clone())
            .or_default()
            .insert(self.seq, e);
        self.pending += 1;
    }

    fn take_pending(&mut self, id: &str) -> Option<Entry> {
        let Some(Known::Pending(dest, seq)) = self.ids.get(id) else {
            return None;
        };
        let q = self.queues.get_mut(dest)?;
        let e = q.remove(seq)?;
        if q.is_empty() {
            self.queues.remove(&e.dest);
        }
        self.pending -= 1;
        Some(e)
    }

    /// Appends durably; on failure the log is cut back so no half record stays.
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        self.log.append(buf, self.len)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Adds the entries whose ids the outbox does not know yet (pending or delivered), with
    /// one fsync; returns how many were new.
    pub fn add(&mut self, entries: Vec<Entry>) -> Result<usize> {
        let mut fresh: Vec<Entry> = Vec::with_capacity(entries.len());
        for e in entries {
            if !self.ids.contains_key(&e.id) && !fresh.iter().any(|f| f.id == e.id) {
                fresh.push(e);
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::new();
        for e in &fresh {
            encode_add(e, &mut buf);
        }
        self.append(&buf)?;
        let n = fresh.len();
        for e in fresh {
            self.insert(e);
        }
        self.maybe_compact();
        Ok(n)
    }

    /// The oldest pending entry for `dest`.
    pub fn next(&self, dest: &str) -> Option<Entry> {
        self.queues
            .get(dest)
            .and_then(|q| q.values().next())
            .cloned()
    }

    pub fn pending(&self, dest: &str) -> usize {
        self.queues.get(dest).map_or(0, |q| q.len())
    }

    /// Every pending entry of `dest`, oldest first.
    pub fn pending_entries(&self, dest: &str) -> Vec<Entry> {
        self.queues
            .get(dest)
            .map(|q| q.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn pending_total(&self) -> usize {
        self.pending
    }

    /// Marks a pending entry delivered (`"delivered"`) or given up on (`"rejected: why"`),
    /// durably, before the caller moves on. Ids that are not pending are left as they are.
    pub fn done(&mut self, id: &str, outcome: &str) -> Result<()> {
        let Some(Known::Pending(dest, seq)) = self.ids.get(id) else {
            return Ok(());
        };
        let at_ms = self.queues[dest][seq].at_ms;
        let mut buf = Vec::new();
        encode(&RecordOut::Done { id, outcome, at_ms }, &mut buf);
        self.append(&buf)?;
        self.take_pending(id);
        self.ids.insert(
            id.to_string(),
            Known::Done(Done {
                at_ms,
                outcome: outcome.to_string(),
            }),
        );
        self.maybe_compact();
        Ok(())
    }

    fn maybe_compact(&mut self) {
        // An object-store log is read object by object at open: keep the count small.
        let many_objects = matches!(self.log, LogFile::Object { segs, .. } if segs >= 64);
        if self.len > self.compact_at || many_objects {
            if let Err(e) = self.compact() {
                tracing::warn!("alert outbox: compaction failed, the log keeps growing: {e}");
            }
        }
    }

    /// Rewrites the log with only what is still needed: the pending entries in add order,
    /// and the ids of entries done within [`DONE_RETENTION_MS`].
    pub fn compact(&mut self) -> Result<()> {
        let cutoff = now_ms().saturating_sub(DONE_RETENTION_MS);
        self.ids.retain(|_, k| match k {
            Known::Done(d) => d.at_ms >= cutoff,
            Known::Pending(..) => true,
        });
        let mut buf = Vec::new();
        let mut done: Vec<(&String, &Done)> = self
            .ids
            .iter()
            .filter_map(|(id, k)| match k {
                Known::Done(d) => Some((id, d)),
                Known::Pending(..) => None,
            })
            .collect();
        done.sort_by_key(|(id, d)| (d.at_ms, *id));
        for (id, d) in done {
            encode(
                &RecordOut::Done {
                    id,
                    outcome: &d.outcome,
                    at_ms: d.at_ms,
                },
                &mut buf,
            );
        }
        let mut pending: Vec<(u64, &Entry)> = self
            .queues
            .values()
            .flat_map(|q| q.iter().map(|(s, e)| (*s, e)))
            .collect();
        pending.sort_by_key(|(s, _)| *s);
        for (_, e) in pending {
            encode_add(e, &mut buf);
        }
        let len = buf.len() as u64;
        self.log.rewrite(buf)?;
        self.len = len;
        self.compact_at = COMPACT_BYTES.max(2 * self.len);
        Ok(())
    }

    #[cfg(test)]
    fn log_len(&self) -> u64 {
        self.len
    }
}

mod shared;

pub use shared::{Logs, SharedOutbox};

#[cfg(test)]
mod tests;
