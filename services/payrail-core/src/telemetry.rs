//! Logging and the Prometheus text endpoint.

use prometheus::{Encoder, Registry, TextEncoder};

/// Structured logs to stderr; `RUST_LOG` overrides the level (default `info`, with may's
/// own logging at `warn`: at `info` it logs every connection it opens and closes).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,may=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// A registry whose metrics are named `payrail_*` and carry the `service` and
/// `instance_name` labels.
pub fn registry(service: &str, instance: &str) -> Result<Registry, prometheus::Error> {
    Registry::new_custom(
        Some("payrail".into()),
        Some(
            [
                ("service".to_owned(), service.to_owned()),
                ("instance_name".to_owned(), instance.to_owned()),
            ]
            .into(),
        ),
    )
}

/// Registers `metric` in `registry` and hands it back. Registration only fails on a
/// duplicate name, which each service's fixed list of metrics rules out.
pub fn register<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> T {
    let _ = registry.register(Box::new(metric.clone()));
    metric
}

/// Renders every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> Vec<u8> {
    render_all(std::slice::from_ref(registry))
}

/// Several registries of one process as one exposition: families of the same name (the
/// kinds of a worker, told apart by their `service` label) are merged.
pub fn render_all(registries: &[Registry]) -> Vec<u8> {
    let mut families: Vec<prometheus::proto::MetricFamily> = Vec::new();
    for registry in registries {
        for family in registry.gather() {
            match families.iter_mut().find(|f| f.name() == family.name()) {
                Some(existing) => {
                    for metric in family.get_metric() {
                        existing.mut_metric().push(metric.clone());
                    }
                }
                None => families.push(family),
            }
        }
    }
    let mut out = Vec::with_capacity(16 * 1024);
    // Encoding into a Vec only fails on a malformed metric family, which our fixed
    // metric definitions cannot produce; an empty body is the safe answer then.
    if TextEncoder::new().encode(&families, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Latency buckets in seconds, from 0.25 ms to 10 s: fine enough around the 1–50 ms range
/// the payment API's targets live in.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
