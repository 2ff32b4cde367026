//! A frame, or a whole continuation, as a pipeline: the steps left, run by the same
//! interpreter as any pipeline.

use std::sync::Arc;

use super::{Continuation, Frame, Rest, Step};
use crate::error::Error;
use crate::ident::Ident;
use crate::outcome::Outcome;
use crate::pipeline::{Layout, Pipeline, Section, StepCall};

/// One main step of a frame's pipeline.
enum Entry<V, C> {
    /// Step `index` of the frame's own section.
    Own(usize),
    Inserted(Step<V, C>),
}

impl<V, C> Frame<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The frame's remaining steps as a pipeline: the inserted steps, the rest of its
    /// section, the pushed steps; then the sections that would have followed (`rescue!`
    /// and `finally!` after the main steps, `finally!` after `rescue!`).
    pub(crate) fn into_pipeline(self) -> Pipeline<V, C> {
        self.into_parts().1
    }

    /// The value the frame goes on with, and its remaining steps as a pipeline.
    pub(crate) fn into_parts(self) -> (V, Pipeline<V, C>) {
        let Frame {
            value,
            front,
            rest,
            back,
            ..
        } = self;
        (value, program(front, rest, back))
    }

    /// A frame that runs `instead` as a child in place of what is left of `section` of
    /// `own`, then the sections that follow it.
    pub(crate) fn replacing_the_rest(
        ident: Ident,
        value: V,
        own: &Pipeline<V, C>,
        section: Section,
        error: Option<Error>,
        instead: Pipeline<V, C>,
    ) -> Self {
        let rest = Rest {
            pipeline: own.clone(),
            section,
            from: own.layout().len(section),
            error,
        };
        let mut frame = Frame::new(ident, value, false, rest);
        frame.insert(instead);
        frame
    }
}

/// A frame's remaining steps as a pipeline (see [`Frame::into_parts`]).
fn program<V, C>(front: Vec<Step<V, C>>, rest: Rest<V, C>, back: Vec<Step<V, C>>) -> Pipeline<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    let Rest {
        pipeline,
        section,
        from,
        error,
    } = rest;
    let layout = pipeline.layout();
    let own = (from..layout.len(section)).map(Entry::Own);
    let entries: Vec<Entry<V, C>> = front
        .into_iter()
        .map(Entry::Inserted)
        .chain(own)
        .chain(back.into_iter().map(Entry::Inserted))
        .collect();
    let program = Layout {
        main: entries.len(),
        rescue: layout.rescue.filter(|_| section == Section::Main),
        finally: layout.finally.filter(|_| section != Section::Finally),
        current: true,
    };
    let original = pipeline.clone();
    pipeline.with_steps(program, move |call| match call {
        StepCall::Main {
            index,
            value,
            ctx,
            current,
        } => match entries.get(index) {
            Some(Entry::Inserted(step)) => step.run(value, ctx),
            Some(Entry::Own(index)) => run_own(
                &original,
                section,
                *index,
                error.as_ref(),
                value,
                ctx,
                current,
            ),
            None => StepCall::Main {
                index,
                value,
                ctx,
                current,
            }
            .no_such_step(),
        },
        // `finally!` after a `rescue!` frame sees the error `rescue!` handled, as it
        // would have without the capture (unless the rest failed with a new one).
        StepCall::Finally {
            index,
            value,
            ctx,
            error: None,
            current,
        } if section == Section::Rescue => original.run_step(StepCall::Finally {
            index,
            value,
            ctx,
            error: error.as_ref(),
            current,
        }),
        // The sections that follow are the original's, step for step.
        other => original.run_step(other),
    })
}

/// Step `index` of `section` of `pipeline`, run as a main step of a frame's pipeline.
fn run_own<'a, V, C>(
    pipeline: &Pipeline<V, C>,
    section: Section,
    index: usize,
    error: Option<&'a Error>,
    value: &'a V,
    ctx: &'a Arc<C>,
    current: Option<&'a crate::runtime::Current<'a, V, C>>,
) -> Outcome<V, C> {
    let call = match (section, error) {
        (Section::Main, _) => StepCall::Main {
            index,
            value,
            ctx,
            current,
        },
        (Section::Rescue, Some(error)) => StepCall::Rescue {
            index,
            value,
            ctx,
            error,
            current,
        },
        // Unreachable: a frame captured in `rescue!` keeps its error.
        (Section::Rescue, None) => {
            return Outcome::Error(Error::new(
                "internal error: a rescue! frame without its error; please report this bug",
            ))
        }
        (Section::Finally, error) => StepCall::Finally {
            index,
            value,
            ctx,
            error,
            current,
        },
    };
    pipeline.run_step(call)
}

impl<V, C> Continuation<V, C>
where
    V: Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The continuation's remaining steps as one pipeline, to nest or invoke: each inner
    /// frame runs as a nested child (its `rescue!` and `finally!` included), its result
    /// becoming the value of the next (unless it ran muted: then the next frame goes on
    /// with its own value); the outermost frame's steps are the pipeline's own, with its
    /// `rescue!` and `finally!`. The pipeline runs where the outermost frame's pipeline
    /// runs (same queue and configuration, never detached).
    ///
    /// Its argument is what the innermost frame starts with; the innermost frame's own
    /// value is what resuming or forking the continuation starts with.
    ///
    /// Append the rest of the pipeline to itself: its remaining steps run twice, the
    /// second time as a nested pipeline.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// use pipewright::{pipeline, Runtime};
    ///
    /// let p = pipeline!(|value: u32, log: &Mutex<Vec<u32>>, current| {
    ///     {
    ///         let mut rest = current.continuation();
    ///         let again = rest.clone().into_pipeline();
    ///         rest.innermost_mut().push(again);
    ///         rest
    ///     };
    ///     log.lock().unwrap().push(value);
    ///     value = value + 1;
    /// });
    /// let runtime = Runtime::builder(Mutex::new(Vec::new())).register("p", p).start().unwrap();
    /// assert_eq!(runtime.invoke("p", 1_u32).unwrap().try_result().unwrap().unwrap(), 3);
    /// assert_eq!(*runtime.context().lock().unwrap(), [1, 2]);
    /// ```
    pub fn into_pipeline(self) -> Pipeline<V, C> {
        let Continuation {
            innermost,
            mut outer,
        } = self;
        let Some(mut outermost) = outer.pop() else {
            return innermost.into_pipeline();
        };
        let mut steps = Vec::with_capacity(2 * (outer.len() + 1));
        let inner = std::iter::once(innermost).chain(outer);
        let mut frames = inner.peekable();
        while let Some(frame) = frames.next() {
            let muted = frame.muted;
            steps.push(Step::nested(frame.into_pipeline(), muted));
            if muted {
                let next_value = frames.peek().map_or(&outermost.value, |next| &next.value);
                steps.push(Step::value(next_value.clone()));
            }
        }
        steps.append(&mut outermost.front);
        outermost.front = steps;
        outermost.into_pipeline()
    }

    /// The value to start with and the pipeline to run (resume and fork).
    pub(crate) fn into_start(self) -> (V, Pipeline<V, C>) {
        let value = self.innermost.value.clone();
        (value, self.into_pipeline())
    }
}
