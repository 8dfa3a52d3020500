//! What the server tells its operators: Prometheus metrics (`metrics`) and logs and traces
//! (`telemetry`).

pub mod metrics;
pub mod telemetry;
