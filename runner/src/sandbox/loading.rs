//! Loading plugins: reading a component, compiling it (or reading its compiled form from the
//! disk cache) and linking it, once per process.
//!
//! Compiling is the host's heaviest CPU work — a Python or JavaScript component takes seconds
//! to tens of seconds — and wasmtime spreads it over rayon's pool, first come first served. So
//! loads are of two kinds: one that a step (or a request) is waiting for, compiled on that
//! shared pool with every core; and warm-ups nobody waits for yet (`offramp serve` type-checking
//! every pipeline at start), which [`in_background`] sends to one thread of their own. Without
//! that split a step needing a small plugin queued behind a warm-up's big one (measured: a
//! 0.4 s compile took 14 s while the Python Zoom plugin compiled).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use wasmtime::component::Component;

use super::bindings::TaskPre;
use super::{Plugin, Sandbox, SandboxError};

tokio::task_local! {
    /// Set for the futures [`in_background`] runs.
    static WARMING_UP: ();
}

/// Runs `work` as a warm-up: the plugins it loads through [`Sandbox::plugin_async`] compile on
/// a thread of their own, so loads that steps wait for are never queued behind them.
pub async fn in_background<F: Future>(work: F) -> F::Output {
    WARMING_UP.scope((), work).await
}

/// The one thread warm-ups compile on (none if it cannot be started: they share the pool).
fn warm_up_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "offramp-warm-up".into())
            .build()
            .map_err(|e| tracing::warn!(target: "offramp::sandbox", error = %e, "no thread for warm-up compiles"))
            .ok()
    })
    .as_ref()
}

impl Sandbox {
    /// [`Sandbox::plugin`] off the async workers: compiling takes seconds. Inside
    /// [`in_background`], on the warm-up thread; otherwise on the shared compile pool.
    pub async fn plugin_async(self: &Arc<Self>, path: &Path) -> Result<Arc<Plugin>, SandboxError> {
        if let Some(p) = self.loaded(path) {
            return Ok(p);
        }
        let warm_up = WARMING_UP.try_with(|_| ()).is_ok();
        let (sandbox, owned) = (self.clone(), path.to_path_buf());
        let load = move || match warm_up_pool().filter(|_| warm_up) {
            Some(pool) => pool.install(|| sandbox.plugin(&owned)),
            None => sandbox.plugin(&owned),
        };
        tokio::task::spawn_blocking(load)
            .await
            .unwrap_or_else(|e| Err(SandboxError::Engine(format!("loading {} stopped: {e}", path.display()))))
    }

    /// Loads (or returns the already loaded) plugin at `path`.
    pub fn plugin(&self, path: &Path) -> Result<Arc<Plugin>, SandboxError> {
        if let Some(p) = self.loaded(path) {
            return Ok(p);
        }
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let plugin = Arc::new(self.load(path)?);
        if let Ok(mut m) = self.plugins.lock() {
            m.insert(key, plugin.clone());
        }
        Ok(plugin)
    }

    /// The plugin at `path` if it is already loaded (no compiling).
    pub(crate) fn loaded(&self, path: &Path) -> Option<Arc<Plugin>> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        self.plugins.lock().ok().and_then(|m| m.get(&key).cloned())
    }

    /// Reads, compiles (or loads from the disk cache) and links a plugin, bypassing the
    /// in-memory map. `plugin()` is what the engine uses; this is for tools and benchmarks.
    pub fn load(&self, path: &Path) -> Result<Plugin, SandboxError> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| SandboxError::Read { path: shown.clone(), source })?;
        let digest = crate::digest::sha256_hex(&bytes);
        let component = self.compile_cached(&bytes, &digest, &shown)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| SandboxError::Link { path: shown.clone(), reason: format!("{e:#}") })?;
        let pre =
            TaskPre::new(pre).map_err(|e| SandboxError::Link { path: shown.clone(), reason: format!("{e:#}") })?;
        Ok(Plugin { pre, contract: Default::default(), parsed: Default::default(), digest, path: key })
    }

    /// Compiles a component, or loads its compiled form from the disk cache.
    fn compile_cached(&self, bytes: &[u8], digest: &str, shown: &str) -> Result<Component, SandboxError> {
        let compile_err = |e: wasmtime::Error| {
            let reason = format!("{e:#}");
            if reason.contains("exceeds the configured maximum") {
                SandboxError::OverLimits { path: shown.to_string(), reason }
            } else {
                SandboxError::Compile { path: shown.to_string(), reason }
            }
        };
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(compile_err);
        };
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        let file = dir.join(format!("{digest}-{:016x}.cwasm", h.finish()));
        // Read into memory rather than mmap the file: a cache file truncated or replaced while
        // we run must not be able to fault the process (SIGBUS).
        if let Ok(compiled) = std::fs::read(&file) {
            // SAFETY: the file was written by `Component::serialize` of this same engine
            // configuration (its name carries the compatibility hash) into our own cache
            // directory; wasmtime checks its header and version before using it.
            if let Ok(c) = unsafe { Component::deserialize(&self.engine, &compiled) } {
                return Ok(c);
            }
        }
        let component = Component::new(&self.engine, bytes).map_err(compile_err)?;
        if let Ok(serialized) = component.serialize() {
            // Unique per writer: two loads of one plugin at once (a warm-up and a step) must not
            // interleave their bytes in one file before the rename.
            let tmp = file.with_extension(format!("tmp{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
            if std::fs::write(&tmp, serialized).is_ok() {
                let _ = std::fs::rename(&tmp, &file);
            }
        }
        Ok(component)
    }
}
