/// What the steps multiply by.
pub(crate) struct Config {
    /// The factor.
    pub(crate) factor: i32,
}

/// Multiplies by the factor, adds one at the root, then doubles at the root; in a
/// restartable queue named `scale`.
///
/// The three-binding header `|value, ctx, current|`, a borrowed value, a waiting step
/// that names the view of its instance, and a queue configured after the macro.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, Config> {
    pipewright::pipeline!(|value: &i32, config: &Config, current| {
        value = value * config.factor;
        value = if current.parent().is_none() { value + 1 } else { *value };
        value = std::future::ready(if current.parent().is_some() { 0 } else { value * 2 }).await;
    })
    .restartable()
    .queue("scale")
}
