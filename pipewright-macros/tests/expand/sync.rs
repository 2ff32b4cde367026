/// Adds one, doubles up to 10, then subtracts one (an error below zero).
///
/// Synchronous steps: an assigned value, one assigned conditionally, `?` (the error
/// path), and a bare step whose result is discarded.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, ()> {
    pipewright::pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        value = if value > 10 { value } else { value * 2 };
        value.checked_mul(2);
        value = value.checked_sub(1).filter(|left| *left >= 0).ok_or("below zero")?;
    })
}
