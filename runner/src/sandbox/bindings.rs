//! Host bindings generated from `wit/plugin.wit`; nothing else in the runner calls `bindgen!`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "offramp:plugin/task",
    imports: {
        "offramp:plugin/http.send": async,
    },
    exports: { default: async },
});

pub(crate) use self::offramp::plugin::http as wit_http;
pub(crate) use self::offramp::plugin::log as wit_log;
pub(crate) use self::offramp::plugin::types as wit_types;
