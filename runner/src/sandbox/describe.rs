//! Asking a plugin about itself: `describe()` (name, version, inputs) and, for plugins built
//! for the `described-task` world, `contract()` (each action's input and output JSON Schemas),
//! which validation type-checks pipelines against. Each call runs in a fresh instance under a
//! short time limit, with no network.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::bindings::wit_types;
use super::{Plugin, Sandbox, SandboxError};
use crate::http::{Gate, GateClient};
use crate::pipeline::{ActionDecl, Contract, ContractLoader, Declared};

/// How long `describe()` or `contract()` may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// The memory either may use.
const ASK_MEMORY: u64 = 64 * 1024 * 1024;
/// How much a contract may declare (its schemas are parsed and compiled by the host).
const MAX_CONTRACT_BYTES: usize = 1024 * 1024;
const MAX_ACTIONS: usize = 256;

/// `describe()`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct PluginDescription {
    pub name: String,
    pub version: String,
    pub description: String,
    pub inputs: Vec<PluginInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PluginInput {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub required: bool,
    pub description: String,
}

impl Sandbox {
    /// A store for asking a plugin about itself: no hosts allowed, a short deadline.
    async fn ask_store(&self) -> Result<wasmtime::Store<super::host::StepState>, String> {
        let client = GateClient::new(Default::default()).map_err(|e| format!("cannot set up HTTP: {e}"))?;
        let gate = Arc::new(Gate::new(&client, vec![], vec![], true, tokio::time::Instant::now() + ASK_TIMEOUT));
        Ok(self.store(gate, ASK_MEMORY, ASK_TIMEOUT))
    }

    /// Calls `describe()` on a plugin.
    pub async fn describe(&self, plugin: &Plugin) -> Result<PluginDescription, String> {
        let _turn = self.admission.acquire().await.map_err(|e| e.to_string())?;
        let mut store = self.ask_store().await?;
        let call = async {
            let task = plugin.pre.instantiate_async(&mut store).await?;
            task.call_describe(&mut store).await
        };
        let info = tokio::time::timeout(ASK_TIMEOUT, call)
            .await
            .map_err(|_| format!("describe() took longer than {ASK_TIMEOUT:?}"))?
            .map_err(|e| format!("{e:#}"))?;
        Ok(PluginDescription {
            name: info.name,
            version: info.version,
            description: info.description,
            inputs: info
                .inputs
                .into_iter()
                .map(|i| PluginInput {
                    name: i.name,
                    type_name: i.type_name,
                    required: i.required,
                    description: i.description,
                })
                .collect(),
        })
    }

    /// What the plugin's `contract()` declares (asked once per loaded plugin); an empty list for
    /// a plugin of the 0.1.0 `task` world, which has no `contract` export.
    pub async fn contract(&self, plugin: &Plugin) -> Result<Vec<ActionDecl>, String> {
        plugin.contract.get_or_init(|| self.ask_contract(plugin)).await.clone()
    }

    async fn ask_contract(&self, plugin: &Plugin) -> Result<Vec<ActionDecl>, String> {
        let _turn = self.admission.acquire().await.map_err(|e| e.to_string())?;
        let mut store = self.ask_store().await?;
        let call = async {
            let instance: wasmtime::component::Instance =
                plugin.pre.instance_pre().instantiate_async(&mut store).await?;
            let Some(func) = instance.get_func(&mut store, "contract") else {
                return wasmtime::Result::<Vec<wit_types::ActionSpec>>::Ok(vec![]);
            };
            let typed = func.typed::<(), (Vec<wit_types::ActionSpec>,)>(&store)?;
            let (specs,) = typed.call_async(&mut store, ()).await?;
            wasmtime::Result::Ok(specs)
        };
        let specs = tokio::time::timeout(ASK_TIMEOUT, call)
            .await
            .map_err(|_| format!("its contract() took longer than {ASK_TIMEOUT:?}"))?
            .map_err(|e| format!("its contract() failed: {e:#}"))?;
        let bytes: usize = specs
            .iter()
            .map(|s| s.name.len() + s.description.len() + s.input_schema.len() + s.output_schema.len())
            .sum();
        if specs.len() > MAX_ACTIONS || bytes > MAX_CONTRACT_BYTES {
            return Err(format!(
                "its contract() declares {} actions in {bytes} bytes, over the limit of {MAX_ACTIONS} actions and {MAX_CONTRACT_BYTES} bytes",
                specs.len()
            ));
        }
        Ok(specs
            .into_iter()
            .map(|s| ActionDecl {
                name: s.name,
                description: s.description,
                input_schema: s.input_schema,
                output_schema: s.output_schema,
            })
            .collect())
    }

    /// The plugin's contract, parsed (asked once per loaded plugin); `None` when it declares
    /// nothing or its declaration is broken (validation reports that at `uses:`).
    pub(crate) async fn parsed_contract(&self, plugin: &Plugin) -> Option<Arc<Contract>> {
        match self.declared_by(plugin).await {
            Declared::Contract(c) => Some(c),
            Declared::Nothing | Declared::Unusable(_) => None,
        }
    }

    /// What a loaded plugin declares, parsed and its validators built once.
    async fn declared_by(&self, plugin: &Plugin) -> Declared {
        plugin
            .parsed
            .get_or_init(|| async {
                let decls = match self.contract(plugin).await {
                    Ok(d) => d,
                    Err(e) => return Declared::Unusable(e),
                };
                let name = plugin.path.file_stem().and_then(|s| s.to_str()).unwrap_or("the plugin");
                match Contract::parse(name, decls) {
                    Ok(Some(c)) => Declared::Contract(Arc::new(c)),
                    Ok(None) => Declared::Nothing,
                    Err(e) => Declared::Unusable(e),
                }
            })
            .await
            .clone()
    }

    /// The plugin at `path`, loaded (compiling is CPU work: off the async threads, unless it is
    /// loaded already), and what it declares.
    pub async fn declared(self: &Arc<Self>, path: &Path) -> Declared {
        let plugin = match self.plugin_async(path).await {
            Ok(p) => p,
            Err(e) => return Declared::Unusable(unusable(path, &e)),
        };
        self.declared_by(&plugin).await
    }
}

/// A loading error, said for a `uses:` line (the path is already on it).
fn unusable(path: &Path, e: &SandboxError) -> String {
    let first_line = |s: &str| s.lines().next().unwrap_or_default().trim_end_matches(" - expected=[").to_string();
    match e {
        SandboxError::Read { source, .. } => format!("cannot read it: {source}"),
        SandboxError::Compile { reason, .. } => {
            // The header says what the file is: not WebAssembly at all, or a core module
            // (version 1) where a component (layer 1) is needed.
            let mut head = [0u8; 8];
            let n = std::fs::File::open(path).and_then(|mut f| std::io::Read::read(&mut f, &mut head)).unwrap_or(0);
            if n < 8 || head[..4] != *b"\0asm" {
                "this file is not WebAssembly (a plugin is a WebAssembly component, e.g. `cargo build --target wasm32-wasip2`)".into()
            } else if head[4..] == [1, 0, 0, 0] {
                "this is a core WebAssembly module, not a component: build it for `wasm32-wasip2` (or wrap it with `wasm-tools component new`)".into()
            } else {
                format!("this file is not a valid WebAssembly component ({})", first_line(reason))
            }
        }
        SandboxError::OverLimits { reason, .. } => format!("it needs more than the sandbox allows: {reason}"),
        SandboxError::Link { reason, .. } => format!(
            "this component is not an offramp plugin: it does not fit the `task` world of offramp:plugin@0.1.1 ({})",
            first_line(reason)
        ),
        SandboxError::Engine(reason) => format!("the WebAssembly engine failed: {reason}"),
    }
}

impl ContractLoader for Arc<Sandbox> {
    async fn load_contract(&self, plugin: &Path) -> Declared {
        self.declared(plugin).await
    }
}
