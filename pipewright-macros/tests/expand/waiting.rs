async fn halve(value: i32) -> Result<i32, String> {
    if value % 2 == 0 {
        Ok(value / 2)
    } else {
        Err(format!("{value} is odd"))
    }
}

/// Waiting steps (one naming the value, one naming nothing), nested pipelines, `rescue!`
/// and `finally!`: halves the value (an odd one is rescued as -1), adds one in a child,
/// multiplies by ten in another, and subtracts 100 at the end after an error.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, ()> {
    let add_one = pipewright::pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
    });
    pipewright::pipeline!(|value: i32, _ctx: &()| {
        value = halve(value).await;
        std::future::ready(()).await;
        value = add_one.clone();
        value = pipewright::pipeline!(|value: i32, _ctx: &()| {
            value = value * 10;
        });
        rescue!(|error| {
            value = if error.to_string().is_empty() { 0 } else { -1 };
        });
        finally!(|error| {
            value = if error.is_some() { value - 100 } else { value };
        });
    })
}
