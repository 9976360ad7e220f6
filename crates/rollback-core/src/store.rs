//! Where the machine's state is persisted, so a restarted engine resumes
//! instead of forgetting or acting twice.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::{Error, ErrorKind, MachineState, Result, TargetId};

/// The format version of persisted state.
const FORMAT: u32 = 1;

#[derive(serde::Deserialize)]
struct Stored {
    format: u32,
    state: MachineState,
}

/// What is written: [`Stored`], borrowing the state (a save copies nothing).
#[derive(serde::Serialize)]
struct StoredRef<'a> {
    format: u32,
    state: &'a MachineState,
}

/// Indented JSON, for files people read.
fn encode(state: &MachineState) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(&StoredRef {
        format: FORMAT,
        state,
    })
    .map_err(|e| Error::permanent("cannot serialize machine state").with_source(e))
}

/// The same JSON without indentation (a state is a few hundred bytes).
fn encode_compact(state: &MachineState) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(
        &mut bytes,
        &StoredRef {
            format: FORMAT,
            state,
        },
    )
    .map_err(|e| Error::permanent("cannot serialize machine state").with_source(e))?;
    Ok(bytes)
}

fn decode(bytes: &[u8], what: &str) -> Result<MachineState> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("{what} is corrupt ({e}); the engine will not reset it: repair it, or move it away to start the watch afresh"),
        )
    })?;
    if stored.format != FORMAT {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "{what} has format {} but this engine reads format {FORMAT}",
                stored.format
            ),
        ));
    }
    Ok(stored.state)
}

/// The bytes a store keeps for `state`: the JSON every store of this
/// crate writes (`{"format": 1, "state": …}`), for stores kept elsewhere
/// (a Kubernetes ConfigMap) to write the same.
pub fn state_to_bytes(state: &MachineState) -> Result<Vec<u8>> {
    encode(state)
}

/// The state in bytes [`state_to_bytes`] wrote; `what` names where they
/// were read in the [`ErrorKind::Corrupt`] error for anything else.
pub fn state_from_bytes(bytes: &[u8], what: &str) -> Result<MachineState> {
    decode(bytes, what)
}

/// Persists one [`MachineState`] per target.
///
/// # Contract
/// - `save` is atomic: after a crash, `load` returns the old or the new state,
///   never a mix.
/// - `load` of a target never saved is `Ok(None)`. Unreadable or corrupt data
///   is an [`ErrorKind::Corrupt`] error naming where it is; it is never
///   silently reset.
#[async_trait]
pub trait StateStore: fmt::Debug + Send + Sync + 'static {
    /// The saved state of `target`.
    async fn load(&self, target: &TargetId) -> Result<Option<MachineState>>;
    /// Save the state of its target.
    async fn save(&self, state: &MachineState) -> Result<()>;
}

/// Keeps states in memory, serialized, so what a test resumes from went
/// through the same encoding as a file (without its indentation). Cloning
/// shares it.
#[derive(Debug, Clone, Default)]
pub struct MemoryStateStore {
    /// Each state's bytes, exactly as long as they are (a buffer written
    /// into holds up to an eighth more, and 8 bytes of length).
    states: Arc<Mutex<BTreeMap<TargetId, Box<[u8]>>>>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Overwrite the stored bytes of a target (to test corruption handling).
    pub fn put_raw(&self, target: &TargetId, bytes: Vec<u8>) {
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target.clone(), bytes.into_boxed_slice());
    }
}

#[async_trait]
impl StateStore for MemoryStateStore {
    async fn load(&self, target: &TargetId) -> Result<Option<MachineState>> {
        let bytes = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
            .cloned();
        bytes
            .map(|b| decode(&b, &format!("the stored state of target {target}")))
            .transpose()
    }

    async fn save(&self, state: &MachineState) -> Result<()> {
        let target = &state.watch.target;
        // Written outside the lock, then cut to its length.
        let bytes = encode_compact(state)?.into_boxed_slice();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        match states.get_mut(target) {
            Some(kept) => *kept = bytes,
            None => {
                states.insert(target.clone(), bytes);
            }
        }
        Ok(())
    }
}

/// One JSON file per target in a directory, replaced atomically (write a
/// temporary file, fsync, rename, fsync the directory).
#[derive(Debug, Clone)]
pub struct FileStateStore {
    dir: PathBuf,
}

impl FileStateStore {
    /// A store in `dir`, created if missing.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::permanent(format!("cannot create state directory {}", dir.display()))
                .with_source(e)
        })?;
        Ok(FileStateStore { dir })
    }

    /// The file of a target: its id with every byte outside `[A-Za-z0-9._-]`
    /// percent-encoded, plus `.json`. An id whose encoding is longer than
    /// 200 bytes (file names hold 255) is cut to its first 160, then `~`
    /// and 32 hex digits of its SHA-256: `~` is never in an encoding, so
    /// such a name meets no other.
    pub fn path_of(&self, target: &TargetId) -> PathBuf {
        let mut name = String::new();
        for b in target.as_str().bytes() {
            if b.is_ascii_alphanumeric()
                || b == b'-'
                || b == b'_'
                || (b == b'.' && !name.is_empty())
            {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        if name.len() > 200 {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(target.as_str().as_bytes());
            name.truncate(160);
            name.push('~');
            for b in &digest[..16] {
                name.push_str(&format!("{b:02x}"));
            }
        }
        self.dir.join(format!("{name}.json"))
    }
}

#[async_trait]
impl StateStore for FileStateStore {
    async fn load(&self, target: &TargetId) -> Result<Option<MachineState>> {
        let path = self.path_of(target);
        match tokio::fs::read(&path).await {
            Ok(bytes) => decode(&bytes, &format!("state file {}", path.display())).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::new(
                ErrorKind::Corrupt,
                format!("cannot read state file {}", path.display()),
            )
            .with_source(e)),
        }
    }

    async fn save(&self, state: &MachineState) -> Result<()> {
        let path = self.path_of(&state.watch.target);
        let bytes = encode(state)?;
        let dir = self.dir.clone();
        let tmp = path.with_extension("json.tmp");
        let write = {
            let path = path.clone();
            move || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                drop(f);
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(&dir)?.sync_all()
            }
        };
        tokio::task::spawn_blocking(write)
            .await
            .map_err(|e| Error::permanent("the state writer task failed").with_source(e))?
            .map_err(|e| {
                Error::transient(format!("cannot write state file {}", path.display()))
                    .with_source(e)
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::machine::{Candidate, Machine, Watch};
    use crate::{Policy, RevisionHealth, Timestamp};

    fn state(target: &TargetId, revision: &str) -> MachineState {
        let policy =
            Arc::new(Policy::from_yaml("probes: [{name: e, success: '< 1'}]").expect("valid"));
        let history = vec![Candidate::new(revision, RevisionHealth::Unknown)];
        Machine::new(
            policy,
            Watch::new(target.clone(), revision, history),
            Timestamp::EPOCH,
        )
        .state()
        .clone()
    }

    #[tokio::test]
    async fn ids_too_long_for_a_file_name_are_saved_and_kept_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path()).unwrap();
        // A git URL of a deep path: 600 bytes encoded; two that differ
        // only after the part a name keeps.
        let base = format!("git:https://example.com/{}", "team/config/".repeat(40));
        let (a, b) = (
            TargetId::new(format!("{base}a")),
            TargetId::new(format!("{base}b")),
        );
        for (id, rev) in [(&a, "va"), (&b, "vb")] {
            store.save(&state(id, rev)).await.unwrap();
        }
        for (id, rev) in [(&a, "va"), (&b, "vb")] {
            let back = store.load(id).await.unwrap().expect("saved");
            assert_eq!(back.watch.revision.as_str(), rev);
        }
        assert_ne!(store.path_of(&a), store.path_of(&b));
        for id in [&a, &b] {
            let name = store.path_of(id).file_name().unwrap().len();
            assert!(name <= 200, "{name} bytes");
        }
        // Short ids keep their plain names.
        assert_eq!(
            store.path_of(&TargetId::new("k8s:shop/web")),
            dir.path().join("k8s%3Ashop%2Fweb.json")
        );
    }
}
