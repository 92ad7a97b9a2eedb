//! The SQLite checkpointer thread: it copies the WAL back into the database file in the
//! background and syncs that file in steps, so the writer rarely does either (see the
//! parent module for why).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use super::{Role, connect};
use crate::config::SqliteSynchronous;

/// How often the checkpointer looks at the WAL.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL frames (pages) beyond which the WAL is restarted (reused from its start) instead of
/// growing under sustained load.
const RESTART_WAL_AT: i64 = 4_096;
/// WAL frames (pages) copied into the database file between two syncs of it, at most.
const SYNC_EVERY_FRAMES: i64 = 256;

/// What the checkpointer thread is doing, shared with the writer: whether the writer should
/// finish a checkpoint's tail, and what the checkpointer is busy with (so a slow commit can
/// say whether it overlapped the checkpointer's copying or syncing of the database file).
#[derive(Default)]
pub(super) struct Checkpointing {
    /// Set once the checkpointer copied and synced nearly all of a long WAL.
    pub(super) restart_due: AtomicBool,
    /// [`IDLE`], [`COPYING`] or [`SYNCING`].
    busy: AtomicU8,
}

const IDLE: u8 = 0;
const COPYING: u8 = 1;
const SYNCING: u8 = 2;

impl Checkpointing {
    /// What the checkpointer is doing now, in words for a log line.
    pub(super) fn busy_with(&self) -> &'static str {
        match self.busy.load(Ordering::Acquire) {
            COPYING => "copying frames into the database file",
            SYNCING => "syncing the database file",
            _ => "idle",
        }
    }
}

/// Checkpoints the WAL in the background until the writer is gone: a passive checkpoint
/// (never in the writer's way) every [`CHECKPOINT_EVERY`]; once the WAL holds more than
/// [`RESTART_WAL_AT`] frames, it syncs the database file and asks the writer to finish.
///
/// `file` is the store's one descriptor on the database file (see [`super::open`]). The database
/// file is also synced whenever [`SYNC_EVERY_FRAMES`] more frames were copied
/// into it: the pages a checkpoint writes wait in the page cache until a sync, and one sync
/// of a whole WAL's worth (16 MiB) took long enough that the writer's own commits, queued
/// behind it at the disk, stalled every delivery for a quarter to half a second.
pub(super) fn checkpoint_loop(
    path: &Path,
    file: &std::fs::File,
    writer_gone: &std::sync::mpsc::Receiver<()>,
    checkpointing: &Checkpointing,
) {
    let conn = match connect(path, Role::Checkpointer, SqliteSynchronous::Full) {
        Ok(conn) => conn,
        Err(error) => {
            tracing::error!(error = %error, "the checkpointer cannot open the database");
            return;
        }
    };
    // Frames of the current WAL copied into the database file when it was last synced.
    let mut synced_to = 0_i64;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        writer_gone.recv_timeout(CHECKPOINT_EVERY)
    {
        checkpointing.busy.store(COPYING, Ordering::Release);
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        checkpointing.busy.store(IDLE, Ordering::Release);
        let (frames, copied) = match passive {
            Ok(counts) => counts,
            Err(error) => {
                tracing::warn!(error = %error, "checkpoint failed; will try again");
                continue;
            }
        };
        if copied < synced_to {
            // The WAL was restarted: its frames count from the start again.
            synced_to = 0;
        }
        let restart = frames > RESTART_WAL_AT;
        if !restart && copied - synced_to < SYNC_EVERY_FRAMES {
            continue;
        }
        checkpointing.busy.store(SYNCING, Ordering::Release);
        let synced = file.sync_data();
        checkpointing.busy.store(IDLE, Ordering::Release);
        match synced {
            Ok(()) => {
                synced_to = copied;
                if restart {
                    checkpointing.restart_due.store(true, Ordering::Release);
                }
            }
            Err(error) => tracing::warn!(error = %error, "syncing the database failed"),
        }
    }
}
