//! Operator-wide limits on every plugin instance: the `sandbox:` section of the config file.
//! A step's own time and memory come from its `timeout:` and `memory:` in the pipeline.
//!
//! ```yaml
//! sandbox:
//!   max_instances: 32        # plugin instances alive at once; more wait their turn
//!   max_output_bytes: 1MiB   # the JSON a plugin returns
//!   max_stdio_bytes: 64KiB   # kept of stdout, and of stderr, per attempt (the rest is counted)
//!   max_log_lines: 1000      # log lines kept per attempt
//!   max_log_bytes: 256KiB    # log bytes kept per attempt
//!   max_stack_bytes: 512KiB  # WebAssembly stack (deep recursion ends the step)
//!   max_table_elements: 100000   # elements a table may grow to
//!   max_core_instances: 32   # core modules one plugin may instantiate
//!   max_memories: 4          # linear memories one plugin may have
//!   max_tables: 32           # tables one plugin may have
//!   max_host_resources: 256  # host objects (wasi:http requests, headers, streams…) held at once
//! ```

use serde::Deserialize;

/// The limits, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    pub max_instances: u32,
    pub max_output_bytes: u64,
    pub max_stdio_bytes: u64,
    pub max_log_lines: u32,
    pub max_log_bytes: u64,
    pub max_stack_bytes: u64,
    pub max_table_elements: u32,
    pub max_core_instances: u32,
    pub max_memories: u32,
    pub max_tables: u32,
    /// Host objects one instance may hold at once (wasi:http requests, responses, header
    /// fields, streams, pollables): with the per-object caps, what bounds the host memory a
    /// plugin can make the host keep for it.
    pub max_host_resources: u32,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            max_instances: 32,
            max_output_bytes: 1024 * 1024,
            max_stdio_bytes: 64 * 1024,
            max_log_lines: 1000,
            max_log_bytes: 256 * 1024,
            max_stack_bytes: 512 * 1024,
            max_table_elements: 100_000,
            // Per plugin (component). The pooling allocator is sized as `max_instances` times
            // these, so admitted instances can never exhaust it.
            max_core_instances: 32,
            max_memories: 4,
            max_tables: 32,
            max_host_resources: 256,
        }
    }
}

/// `sandbox:` as written; each absent field keeps its default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub max_instances: Option<u32>,
    pub max_output_bytes: Option<String>,
    pub max_stdio_bytes: Option<String>,
    pub max_log_lines: Option<u32>,
    pub max_log_bytes: Option<String>,
    pub max_stack_bytes: Option<String>,
    pub max_table_elements: Option<u32>,
    pub max_core_instances: Option<u32>,
    pub max_memories: Option<u32>,
    pub max_tables: Option<u32>,
    pub max_host_resources: Option<u32>,
}

impl SandboxConfig {
    /// Checks every field; all problems at once.
    pub fn limits(&self) -> Result<SandboxLimits, Vec<String>> {
        let mut l = SandboxLimits::default();
        let mut errors = Vec::new();
        let mut count = |name: &str, v: Option<u32>, range: std::ops::RangeInclusive<u32>, slot: &mut u32| {
            if let Some(n) = v {
                if range.contains(&n) {
                    *slot = n;
                } else {
                    errors.push(format!("sandbox.{name}: {n} is outside {}..={}", range.start(), range.end()));
                }
            }
        };
        count("max_instances", self.max_instances, 1..=1024, &mut l.max_instances);
        count("max_log_lines", self.max_log_lines, 1..=1_000_000, &mut l.max_log_lines);
        count("max_table_elements", self.max_table_elements, 1_000..=10_000_000, &mut l.max_table_elements);
        count("max_core_instances", self.max_core_instances, 1..=1_000, &mut l.max_core_instances);
        count("max_memories", self.max_memories, 1..=100, &mut l.max_memories);
        count("max_tables", self.max_tables, 1..=1_000, &mut l.max_tables);
        count("max_host_resources", self.max_host_resources, 16..=100_000, &mut l.max_host_resources);
        for (name, text, slot, range) in [
            ("max_output_bytes", &self.max_output_bytes, &mut l.max_output_bytes, 1024..=256 << 20),
            ("max_stdio_bytes", &self.max_stdio_bytes, &mut l.max_stdio_bytes, 0..=64 << 20),
            ("max_log_bytes", &self.max_log_bytes, &mut l.max_log_bytes, 1024..=64 << 20),
            ("max_stack_bytes", &self.max_stack_bytes, &mut l.max_stack_bytes, 64 << 10..=64 << 20),
        ] {
            let Some(t) = text else { continue };
            match crate::pipeline::model::parse_bytes(t) {
                Ok(n) if range.contains(&n) => *slot = n,
                Ok(n) => errors.push(format!(
                    "sandbox.{name}: {n} bytes is outside {}..={} bytes",
                    range.start(),
                    range.end()
                )),
                Err(e) => errors.push(format!("sandbox.{name}: {e}")),
            }
        }
        if errors.is_empty() { Ok(l) } else { Err(errors) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_overrides_and_errors() {
        assert_eq!(SandboxConfig::default().limits().unwrap(), SandboxLimits::default());
        let c = SandboxConfig { max_instances: Some(4), max_output_bytes: Some("2MiB".into()), ..Default::default() };
        let l = c.limits().unwrap();
        assert_eq!((l.max_instances, l.max_output_bytes), (4, 2 << 20));
        let bad = SandboxConfig {
            max_instances: Some(0),
            max_stack_bytes: Some("1KiB".into()),
            max_log_bytes: Some("much".into()),
            ..Default::default()
        };
        assert_eq!(bad.limits().unwrap_err().len(), 3);
    }
}
