//! Password hashing with bounded concurrency and bounded memory.
//!
//! argon2id needs 19 MiB of working memory per hash. Run on the blocking pool (up to 512
//! threads), every thread that ever hashed kept its own allocator arena with those 19 MiB, so
//! memory grew with the number of concurrent sign-ups and never came back. Here a fixed set of
//! worker threads (one per core) each own one block of argon2 memory, allocated with its first
//! job and reused for every hash after: sign-ups and password checks cost at most
//! `workers x 19 MiB`, whatever the load. Requests wait in a bounded queue; past it they are refused with
//! `SERVICE_UNAVAILABLE` instead of piling up.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, SaltString, rand_core::OsRng};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::oneshot;

use crate::error::{AppError, AppResult};

/// Jobs waiting beyond the ones being hashed before new ones are refused.
const QUEUE: usize = 64;

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<AppResult<String>>,
    },
    Verify {
        password: String,
        phc: String,
        reply: oneshot::Sender<AppResult<bool>>,
    },
}

/// The password hashing service (cloneable handle).
#[derive(Clone)]
pub struct Hasher {
    jobs: SyncSender<Job>,
    workers: usize,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("workers", &self.workers)
            .finish()
    }
}

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

impl Hasher {
    /// Starts `workers` hashing threads (at least one).
    pub fn start(workers: usize) -> std::io::Result<Hasher> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("eagerql-hash-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Hasher { jobs: tx, workers })
    }

    /// Starts one worker per available core.
    pub fn start_default() -> std::io::Result<Hasher> {
        Hasher::start(std::thread::available_parallelism().map_or(1, usize::from))
    }

    fn submit(&self, job: Job) -> AppResult<()> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => AppError::Busy("too many password checks in progress".into()),
            TrySendError::Disconnected(_) => AppError::internal("the password workers stopped"),
        })
    }

    /// An argon2id PHC string for `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> AppResult<String> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Hash { password, reply })?;
        rx.await
            .map_err(|_| AppError::internal("a password worker stopped"))?
    }

    /// Whether `password` matches the PHC string `phc` (argon2id with our parameters). An
    /// unusable hash (such as the demo users' `!`) matches nothing, in the same time as a
    /// real check, so callers cannot tell the two apart.
    pub async fn verify(&self, password: String, phc: String) -> AppResult<bool> {
        let (reply, rx) = oneshot::channel();
        self.submit(Job::Verify {
            password,
            phc,
            reply,
        })?;
        rx.await
            .map_err(|_| AppError::internal("a password worker stopped"))?
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    // Allocated with the first job, then kept and reused: an idle server does not hold it.
    let mut blocks: Vec<Block> = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        if blocks.is_empty() {
            blocks = vec![Block::default(); Params::DEFAULT.block_count()];
        }
        let memory = blocks.as_mut_slice();
        match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hash_with(memory, &password));
            }
            Job::Verify {
                password,
                phc,
                reply,
            } => {
                let _ = reply.send(verify_with(memory, &password, &phc));
            }
        }
    }
}

fn hash_with(memory: &mut [Block], password: &str) -> AppResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(AppError::internal)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2()
        .hash_password_into_with_memory(password.as_bytes(), raw_salt, &mut out, &mut *memory)
        .map_err(|e| AppError::internal(e.to_string()))?;
    let output = argon2::password_hash::Output::new(&out).map_err(AppError::internal)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&Params::DEFAULT).try_into().map_err(AppError::internal)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

fn verify_with(memory: &mut [Block], password: &str, phc: &str) -> AppResult<bool> {
    // A hash we cannot use is checked against a fixed salt anyway, so that an unknown
    // account costs the same as a wrong password.
    let parsed = PasswordHash::new(phc).ok().filter(|h| {
        h.algorithm == argon2::ARGON2ID_IDENT
            && Params::try_from(h).is_ok_and(|p| {
                let d = Params::DEFAULT;
                (p.m_cost(), p.t_cost(), p.p_cost()) == (d.m_cost(), d.t_cost(), d.p_cost())
            })
    });
    let mut salt_bytes = [0u8; 64];
    let (salt, expected): (&[u8], Option<&[u8]>) = match &parsed {
        Some(h) => match (h.salt.as_ref(), h.hash.as_ref()) {
            (Some(s), Some(out)) => (
                s.decode_b64(&mut salt_bytes).map_err(AppError::internal)?,
                Some(out.as_bytes()),
            ),
            _ => (b"eagerql-no-such-account".as_slice(), None),
        },
        None => (b"eagerql-no-such-account".as_slice(), None),
    };
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2()
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut *memory)
        .map_err(|e| AppError::internal(e.to_string()))?;
    Ok(expected.is_some_and(|e| constant_time_eq(e, &out)))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ_by_salt() {
        let h = Hasher::start(1).expect("start");
        let a = h.hash("correct horse".into()).await.expect("hash");
        let b = h.hash("correct horse".into()).await.expect("hash");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt each time");
        assert!(
            h.verify("correct horse".into(), a.clone())
                .await
                .expect("verify")
        );
        assert!(!h.verify("wrong horse".into(), a).await.expect("verify"));
        assert!(
            !h.verify("anything".into(), "!".into())
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn agrees_with_the_reference_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let h = Hasher::start(1).expect("start");
        let ours = h.hash("hunter42hunter42".into()).await.expect("hash");
        let parsed = PasswordHash::new(&ours).expect("phc");
        assert!(
            argon2()
                .verify_password(b"hunter42hunter42", &parsed)
                .is_ok()
        );
        let salt = SaltString::generate(&mut OsRng);
        let theirs = argon2()
            .hash_password(b"hunter42hunter42", &salt)
            .expect("hash")
            .to_string();
        assert!(
            h.verify("hunter42hunter42".into(), theirs)
                .await
                .expect("verify")
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_not_grown() {
        let h = Hasher::start(1).expect("start");
        let mut waiting = Vec::new();
        let mut refused = 0;
        for _ in 0..(QUEUE + 20) {
            let (reply, rx) = oneshot::channel();
            match h.submit(Job::Hash {
                password: "x".repeat(8),
                reply,
            }) {
                Ok(()) => waiting.push(rx),
                Err(e) => {
                    assert_eq!(e.code(), "SERVICE_UNAVAILABLE");
                    refused += 1;
                }
            }
        }
        assert!(refused > 0, "the queue is bounded");
        for rx in waiting {
            assert!(rx.await.expect("reply").is_ok());
        }
    }
}
