//! The register script as a Redis Functions library (Redis ≥ 7.0), with `EVALSHA` as the
//! fallback.
//!
//! Under `EVALSHA` every `local function` of a script is a new closure on every call (Lua 5.1),
//! which cost ~16,000 instructions of a ~108,000-instruction refresh. A function library runs
//! its top level once, at `FUNCTION LOAD`, so the helpers of `common.lua` are defined once.
//! The library is composed from the same sources as the script (one source of truth):
//!
//! ```text
//! #!lua name=sipmesh_<hash>
//! local KEYS, ARGV
//! <common.lua>  <register_rules.lua>
//! redis.register_function('sipmesh_register_<hash>', function(keys, args)
//!   KEYS, ARGV = keys, args
//!   <layout>  <register.lua>
//! end)
//! redis.register_function('sipmesh_register_many_<hash>', function(keys, args)
//!   KEYS, ARGV = keys, args
//!   <register_many.lua>
//! end)
//! ```
//!
//! (the second function on a single server or Sentinel only: several REGISTERs of one batch
//! in one call, `batch.rs`).
//!
//! The helpers name `KEYS`/`ARGV` as in a script; here they are upvalues that each call sets
//! (Redis runs one function at a time, so sharing them is safe). `<hash>` is the SHA-1 of the
//! composed text, so nodes of different versions sharing one Redis load different libraries
//! instead of replacing each other's.
//!
//! The first call decides: `FCALL`; `Function not found` (a new server, a Redis restart, a
//! Cluster failover or reshard to a master without the library) loads the library
//! (`FUNCTION LOAD REPLACE`, on every master of a Cluster) and retries once; an unknown
//! `FCALL`/`FUNCTION` (Redis < 7) switches this store to `EVALSHA` for good (logged once),
//! which keeps its own `NOSCRIPT` load-and-retry.

use std::sync::atomic::{AtomicBool, Ordering};

use ::redis::aio::ConnectionLike;
use ::redis::{Cmd, ErrorKind, RedisError, RedisResult, Script, ServerErrorKind, Value};

/// One script, callable as a library function or as `EVALSHA`; optionally with a second entry
/// point (the several-AORs register call, `register_many.lua`) in the same library.
#[derive(Debug)]
pub(in crate::location) struct RegisterScript {
    /// The one-call entry point.
    one: Entry,
    /// The several-AORs entry point, when the layout has one.
    many: Option<Entry>,
    /// `FUNCTION LOAD` text.
    library: String,
    /// Cleared when the server lacks Redis Functions.
    functions: AtomicBool,
}

/// One entry point: a function of the library, and the same body as a script.
#[derive(Debug)]
struct Entry {
    /// The `EVALSHA` form (fallback).
    script: Script,
    /// The function's name in the library.
    function: String,
}

impl Entry {
    fn new(prelude: &str, body: &str, function: String) -> Self {
        Self {
            script: Script::new(&format!("{prelude}\n{body}")),
            function,
        }
    }

    /// `redis.register_function(...)` of this entry point.
    fn registration(&self, body: &str) -> String {
        format!(
            "redis.register_function('{}', function(keys, args)\n\
             KEYS, ARGV = keys, args\n{body}\nend)\n",
            self.function
        )
    }

    fn command(&self, functions: bool) -> Cmd {
        if functions {
            let mut cmd = ::redis::cmd("FCALL");
            cmd.arg(&self.function);
            cmd
        } else {
            let mut cmd = ::redis::cmd("EVALSHA");
            cmd.arg(self.script.get_hash());
            cmd
        }
    }

    /// Whether `cmd` calls this entry point (by function name or script hash).
    fn called_by(&self, cmd: &Cmd) -> bool {
        match cmd.args_iter().nth(1) {
            Some(::redis::Arg::Simple(name)) => {
                name == self.function.as_bytes() || name == self.script.get_hash().as_bytes()
            }
            _ => false,
        }
    }
}

impl RegisterScript {
    /// The script `prelude` (the helpers, run once in a library) followed by `body` (run per
    /// call; sees `KEYS` and `ARGV`).
    pub(in crate::location) fn new(prelude: &str, body: &str) -> Self {
        Self::compose(prelude, body, None)
    }

    /// Like [`new`](Self::new), with `many` as a second entry point sharing the prelude
    /// (called with [`many_command`](Self::many_command)).
    pub(in crate::location) fn with_many(prelude: &str, body: &str, many: &str) -> Self {
        Self::compose(prelude, body, Some(many))
    }

    fn compose(prelude: &str, body: &str, many_body: Option<&str>) -> Self {
        // Named by the hash of everything composed: nodes of different versions sharing one
        // Redis load different libraries (and functions) instead of replacing each other's.
        let hash = Script::new(&format!("{prelude}\n{body}\n{}", many_body.unwrap_or("")))
            .get_hash()
            .get(..16)
            .unwrap_or_default()
            .to_owned();
        let one = Entry::new(prelude, body, format!("sipmesh_register_{hash}"));
        let many =
            many_body.map(|b| Entry::new(prelude, b, format!("sipmesh_register_many_{hash}")));
        let mut library = format!("#!lua name=sipmesh_{hash}\nlocal KEYS, ARGV\n{prelude}\n");
        library.push_str(&one.registration(body));
        if let (Some(entry), Some(b)) = (&many, many_body) {
            library.push_str(&entry.registration(b));
        }
        Self {
            one,
            many,
            library,
            functions: AtomicBool::new(true),
        }
    }

    /// The start of a call: `FCALL <function>` or `EVALSHA <sha>`; the caller adds the key
    /// count, keys and arguments.
    pub(in crate::location) fn command(&self) -> Cmd {
        self.one.command(self.functions.load(Ordering::Relaxed))
    }

    /// The start of a call of the second entry point (None: this script has none).
    pub(in crate::location) fn many_command(&self) -> Option<Cmd> {
        let functions = self.functions.load(Ordering::Relaxed);
        self.many.as_ref().map(|m| m.command(functions))
    }

    /// The entry point `cmd` calls.
    fn entry_of(&self, cmd: &Cmd) -> &Entry {
        match &self.many {
            Some(many) if many.called_by(cmd) => many,
            _ => &self.one,
        }
    }

    /// After `err` answered `cmd`: makes the script callable (loads the library or the script,
    /// or falls back to `EVALSHA`) and returns the command to retry once, or None when `err`
    /// is not about the script.
    pub(in crate::location) async fn recover<C: ConnectionLike>(
        &self,
        conn: &mut C,
        cmd: &Cmd,
        err: &RedisError,
    ) -> Option<RedisResult<Cmd>> {
        if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) {
            let script = &self.entry_of(cmd).script;
            return Some(script.load_async(conn).await.map(|_| cmd.clone()));
        }
        if is_function_not_found(err) {
            let loaded = ::redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(&self.library)
                .query_async::<Value>(conn)
                .await;
            return Some(match loaded {
                Ok(_) => {
                    tracing::info!(function = %self.one.function, "redis: register script loaded as a function library");
                    Ok(cmd.clone())
                }
                Err(e) if is_unknown_command(&e) => self.fall_back(conn, cmd).await,
                Err(e) => Err(e),
            });
        }
        if is_unknown_command(err) {
            return Some(self.fall_back(conn, cmd).await);
        }
        None
    }

    /// Switches to `EVALSHA` (the server has no Redis Functions) and rewrites `cmd` for it.
    async fn fall_back<C: ConnectionLike>(&self, conn: &mut C, cmd: &Cmd) -> RedisResult<Cmd> {
        if self.functions.swap(false, Ordering::Relaxed) {
            tracing::warn!("redis: no Redis Functions (Redis < 7?): register script via EVALSHA");
        }
        let script = &self.entry_of(cmd).script;
        script.load_async(conn).await?;
        let mut retry = ::redis::cmd("EVALSHA");
        retry.arg(script.get_hash());
        for arg in cmd.args_iter().skip(2) {
            if let ::redis::Arg::Simple(bytes) = arg {
                retry.arg(bytes);
            }
        }
        Ok(retry)
    }

    /// The `FUNCTION LOAD` text.
    #[cfg(test)]
    pub(in crate::location) fn library(&self) -> &str {
        &self.library
    }
}

/// Runs `cmd` (started with [`RegisterScript::command`]) and, on a script-related error,
/// recovers and retries once.
pub(in crate::location) async fn query<C: ConnectionLike>(
    conn: &mut C,
    cmd: &Cmd,
    script: &RegisterScript,
) -> RedisResult<Value> {
    match cmd.query_async::<Value>(conn).await {
        Err(e) => match script.recover(conn, cmd, &e).await {
            Some(Ok(retry)) => retry.query_async::<Value>(conn).await,
            Some(Err(load)) => Err(load),
            None => Err(e),
        },
        ok => ok,
    }
}

/// `ERR Function not found`: the library is not loaded on this server.
fn is_function_not_found(err: &RedisError) -> bool {
    err.to_string().contains("Function not found")
}

/// `ERR unknown command 'FCALL'` / `'FUNCTION'`: a Redis older than 7.0.
fn is_unknown_command(err: &RedisError) -> bool {
    let text = err.to_string().to_ascii_lowercase();
    text.contains("unknown command") && (text.contains("fcall") || text.contains("function"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_wraps_the_body_and_names_by_hash() {
        let s = RegisterScript::new("local function h() return ARGV[1] end", "return h()");
        let lib = s.library();
        assert!(lib.starts_with("#!lua name=sipmesh_"));
        assert!(lib.contains("local KEYS, ARGV\nlocal function h()"));
        assert!(lib.contains("KEYS, ARGV = keys, args\nreturn h()\nend)"));
        let cmd = s.command();
        let args: Vec<_> = cmd.args_iter().collect();
        assert_eq!(args.len(), 2);
        assert!(matches!(args.first(), Some(::redis::Arg::Simple(b"FCALL"))));
        assert!(s.many_command().is_none());
    }

    #[test]
    fn a_second_entry_point_shares_the_library() {
        let s = RegisterScript::with_many("local x = 1", "return x", "return x + 1");
        let lib = s.library();
        assert_eq!(lib.matches("redis.register_function(").count(), 2);
        assert_eq!(lib.matches("local x = 1").count(), 1);
        let many = s.many_command();
        assert!(many.is_some());
        let many = many.unwrap_or_default();
        assert!(std::ptr::eq(
            s.entry_of(&many),
            s.many.as_ref().map_or(&s.one, |m| m)
        ));
        assert!(std::ptr::eq(s.entry_of(&s.command()), &s.one));
    }
}
