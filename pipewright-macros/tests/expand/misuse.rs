/// A `pipeline!` with errors (never compiled): its best-effort expansion. The `let` and
/// the steps after it, the step with `.await` in its middle and the misplaced step
/// stand in; the other steps expand as usual, beside the errors.
pub(crate) fn pipeline() -> pipewright::Pipeline<i32, ()> {
    pipewright::pipeline!(|value: i32, _ctx: &()| {
        value = value + 1;
        let doubled = value * 2;
        doubled + 1;
        rescue!(|error| {
            std::future::ready(0).await + 1;
            0;
        });
        value + 3;
    })
}
