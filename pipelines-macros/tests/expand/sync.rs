/// Adds one, doubles up to 10, then subtracts one (an error below zero).
///
/// Synchronous steps: a new value, `Option` (maybe a new value), `?` (the error path).
pub(crate) fn pipeline() -> pipelines::Pipeline<i32, ()> {
    pipelines::pipeline!(|value: i32, _ctx: &()| {
        value + 1;
        if value > 10 { None } else { Some(value * 2) };
        value.checked_sub(1).filter(|left| *left >= 0).ok_or("below zero")?;
    })
}
