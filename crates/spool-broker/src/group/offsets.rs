//! Committed offsets, durable across restarts.
//!
//! Kafka keeps commits in its `__consumer_offsets` topic; here they go to one append-only file,
//! `<data-dir>/consumer-offsets.log`, one JSON line per change, fsynced before a commit is
//! acknowledged. Opening replays the file (ignoring a torn last line) and rewrites it compacted.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::warn;

const FILE: &str = "consumer-offsets.log";

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    /// Returned to the client exactly as committed.
    pub metadata: Option<String>,
    pub commit_ms: i64,
}

/// A topic-partition.
pub(crate) type Tp = (String, i32);

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k")]
enum Line {
    /// An offset commit.
    #[serde(rename = "c")]
    Commit {
        g: String,
        t: String,
        p: i32,
        o: i64,
        e: i32,
        m: Option<String>,
        ts: i64,
    },
    /// One partition's offset removed (OffsetDelete).
    #[serde(rename = "d")]
    Delete { g: String, t: String, p: i32 },
    /// Every offset of a group removed (DeleteGroups, expiry).
    #[serde(rename = "x")]
    DeleteGroup { g: String },
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, BTreeMap<Tp, Committed>>,
}

impl Inner {
    fn apply(&mut self, line: Line) {
        match line {
            Line::Commit {
                g,
                t,
                p,
                o,
                e,
                m,
                ts,
            } => {
                self.groups.entry(g).or_default().insert(
                    (t, p),
                    Committed {
                        offset: o,
                        leader_epoch: e,
                        metadata: m,
                        commit_ms: ts,
                    },
                );
            }
            Line::Delete { g, t, p } => {
                if let Some(offsets) = self.groups.get_mut(&g) {
                    offsets.remove(&(t, p));
                    if offsets.is_empty() {
                        self.groups.remove(&g);
                    }
                }
            }
            Line::DeleteGroup { g } => {
                self.groups.remove(&g);
            }
        }
    }
}

/// The broker's committed offsets.
#[derive(Debug)]
pub(crate) struct OffsetStore {
    // The file and the map change together, under one lock, so readers never see a commit
    // that is not yet durable.
    state: Mutex<(File, Inner)>,
}

impl OffsetStore {
    /// Replays and compacts the file in `data_dir`.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join(FILE);
        let mut inner = Inner::default();
        match std::fs::read(&path) {
            Ok(bytes) => {
                // Bytes, not `lines()`: a torn line may hold a partial UTF-8 sequence, which
                // must cost that line only, not the broker's start-up.
                for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Line>(line) {
                        Ok(l) => inner.apply(l),
                        // A crash or a failed write leaves a bad line; later lines still count.
                        Err(e) => {
                            warn!(file = %path.display(), line = n + 1, "ignoring torn offset record: {e}")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = rewrite(&path, &inner)?;
        Ok(OffsetStore {
            state: Mutex::new((file, inner)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (File, Inner)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, lines: Vec<Line>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for l in &lines {
            serde_json::to_writer(&mut buf, l).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut state = self.lock();
        let before = state.0.metadata()?.len();
        let written = state.0.write_all(&buf).and_then(|()| state.0.sync_data());
        if let Err(e) = written {
            // The commit is refused, so none of it may come back at the next start: cut the
            // partial write off; if even that fails, start the next write on a fresh line so
            // the torn one cannot swallow it.
            if state.0.set_len(before).is_err() {
                let _ = state.0.write_all(b"\n");
            }
            return Err(e);
        }
        for l in lines {
            state.1.apply(l);
        }
        Ok(())
    }

    /// Durably records `offsets` for `group`. Blocking (fsync): call off the async workers.
    pub fn commit(&self, group: &str, offsets: Vec<(Tp, Committed)>) -> std::io::Result<()> {
        let lines = offsets
            .into_iter()
            .map(|((t, p), c)| Line::Commit {
                g: group.to_string(),
                t,
                p,
                o: c.offset,
                e: c.leader_epoch,
                m: c.metadata,
                ts: c.commit_ms,
            })
            .collect();
        self.write(lines)
    }

    /// Removes some of a group's offsets. Blocking.
    pub fn delete(&self, group: &str, tps: Vec<Tp>) -> std::io::Result<()> {
        let lines = tps
            .into_iter()
            .map(|(t, p)| Line::Delete {
                g: group.to_string(),
                t,
                p,
            })
            .collect();
        self.write(lines)
    }

    /// Removes all of a group's offsets. Blocking.
    pub fn delete_group(&self, group: &str) -> std::io::Result<()> {
        self.write(vec![Line::DeleteGroup {
            g: group.to_string(),
        }])
    }

    /// One committed offset.
    pub fn get(&self, group: &str, tp: &Tp) -> Option<Committed> {
        self.lock()
            .1
            .groups
            .get(group)
            .and_then(|o| o.get(tp))
            .cloned()
    }

    /// All of a group's committed offsets, sorted by topic and partition.
    pub fn all(&self, group: &str) -> Vec<(Tp, Committed)> {
        self.lock()
            .1
            .groups
            .get(group)
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    /// Groups that have committed offsets.
    pub fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.lock().1.groups.keys().cloned().collect();
        g.sort();
        g
    }

    /// The newest commit time of a group, if it has offsets.
    pub fn last_commit_ms(&self, group: &str) -> Option<i64> {
        self.lock()
            .1
            .groups
            .get(group)
            .and_then(|o| o.values().map(|c| c.commit_ms).max())
    }
}

/// Writes the live state to a new file and swaps it in, returning it open for appends.
fn rewrite(path: &Path, inner: &Inner) -> std::io::Result<File> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        let mut buf = Vec::new();
        let mut groups: Vec<_> = inner.groups.iter().collect();
        groups.sort_by(|a, b| a.0.cmp(b.0));
        for (g, offsets) in groups {
            for ((t, p), c) in offsets {
                let line = Line::Commit {
                    g: g.clone(),
                    t: t.clone(),
                    p: *p,
                    o: c.offset,
                    e: c.leader_epoch,
                    m: c.metadata.clone(),
                    ts: c.commit_ms,
                };
                serde_json::to_writer(&mut buf, &line).map_err(std::io::Error::other)?;
                buf.push(b'\n');
            }
        }
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: i64, metadata: Option<&str>) -> Committed {
        Committed {
            offset,
            leader_epoch: 0,
            metadata: metadata.map(str::to_string),
            commit_ms: 1,
        }
    }

    #[test]
    fn commits_survive_reopen_with_metadata_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        let odd = "meta with \"quotes\", unicode é and\nnewline";
        store
            .commit("g", vec![(("t".into(), 0), c(5, Some(odd)))])
            .unwrap();
        store
            .commit(
                "g",
                vec![
                    (("t".into(), 0), c(7, None)),
                    (("t".into(), 1), c(3, Some(""))),
                ],
            )
            .unwrap();
        store
            .commit("h", vec![(("u".into(), 0), c(1, None))])
            .unwrap();
        store.delete("h", vec![("u".into(), 0)]).unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", &("t".into(), 0)), Some(c(7, None)));
        assert_eq!(store.get("g", &("t".into(), 1)), Some(c(3, Some(""))));
        assert_eq!(store.groups(), vec!["g".to_string()]);
        store
            .commit("g", vec![(("t".into(), 2), c(9, Some(odd)))])
            .unwrap();
        store.delete_group("g").unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert!(store.groups().is_empty());
    }

    /// Appends bytes to the offsets file as a torn or failed write would leave them.
    fn append_raw(dir: &Path, bytes: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn a_torn_line_with_broken_utf8_costs_only_that_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store
            .commit("g", vec![(("t".into(), 0), c(4, None))])
            .unwrap();
        drop(store);
        // A partial multi-byte character, then (as after a failed write) a later good line.
        append_raw(dir.path(), b"{\"k\":\"c\",\"g\":\"g\xe2\x82\n");
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", &("t".into(), 0)).unwrap().offset, 4);
        store
            .commit("g", vec![(("t".into(), 1), c(7, None))])
            .unwrap();
        drop(store);
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", &("t".into(), 1)).unwrap().offset, 7);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = OffsetStore::open(dir.path()).unwrap();
        store
            .commit("g", vec![(("t".into(), 0), c(5, None))])
            .unwrap();
        drop(store);
        append_raw(
            dir.path(),
            b"{\"k\":\"c\",\"g\":\"g\",\"t\":\"t\",\"p\":0,\"o\":9",
        );
        let store = OffsetStore::open(dir.path()).unwrap();
        assert_eq!(store.get("g", &("t".into(), 0)).unwrap().offset, 5);
    }
}
