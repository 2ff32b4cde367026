//! A timeline recorder: fed by the runtime's watcher events, it renders what happened to
//! each instance, per queue, as an ASCII chart for terminals or as an SVG picture.
//!
//! Time is read from tokio's clock (`tokio::time::Instant`), so under a paused clock the
//! pictures are exact and repeatable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::events::hooks::{Event, EventKind};

/// What an instance was doing during a stretch of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Admitted, waiting for a slot.
    Waiting,
    /// Started: running its steps or waiting on their futures.
    Running,
    /// Done with its steps, waiting for detached children.
    Children,
}

/// How an instance ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Finished,
    Failed,
    Cancelled,
    Dropped,
}

impl End {
    fn ascii(self) -> char {
        match self {
            End::Finished => '|',
            End::Failed => '!',
            End::Cancelled => 'x',
            End::Dropped => 'D',
        }
    }
}

#[derive(Debug, Clone)]
struct Lane {
    label: String,
    queue: String,
    /// Phase changes: from this time on, this phase.
    phases: Vec<(Duration, Phase)>,
    arrived: Duration,
    end: Option<(Duration, End)>,
}

impl Lane {
    fn phase_at(&self, at: Duration) -> Option<Phase> {
        if at < self.arrived || self.end.is_some_and(|(end, _)| at >= end) {
            return None;
        }
        self.phases
            .iter()
            .take_while(|(from, _)| *from <= at)
            .last()
            .map(|(_, phase)| *phase)
    }

    /// `(from, to, phase)` for each stretch, up to `until` for a lane still live.
    fn segments(&self, until: Duration) -> Vec<(Duration, Duration, Phase)> {
        let end = self.end.map_or(until, |(end, _)| end);
        self.phases
            .iter()
            .enumerate()
            .map(|(index, (from, phase))| {
                let to = self.phases.get(index + 1).map_or(end, |(next, _)| *next);
                (*from, to.min(end), *phase)
            })
            .filter(|(from, to, _)| to > from)
            .collect()
    }
}

#[derive(Debug)]
struct Recording {
    origin: Instant,
    lanes: Vec<Lane>,
    /// Instance id -> index in `lanes`.
    by_id: BTreeMap<u64, usize>,
}

/// Records watcher events and renders them as a timeline.
///
/// Attach it with [`RuntimeBuilder::watcher`](crate::RuntimeBuilder::watcher), or call
/// [`record`](Timeline::record) from a watcher of your own. Cheap to clone (clones share
/// the recording).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pipewright::{pipeline, Runtime, Timeline};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let timeline = Timeline::new();
/// let save = pipeline!(|value: u32, _ctx: &()| {
///     tokio::time::sleep(Duration::from_millis(30)).await;
/// })
/// .enqueued();
/// let runtime = Runtime::builder(())
///     .register("save", save)
///     .watcher(timeline.watcher())
///     .start()
///     .unwrap();
/// let first = runtime.invoke("save", 1_u32).unwrap();
/// let second = runtime.invoke("save", 2_u32).unwrap();
/// first.await.unwrap();
/// second.await.unwrap();
/// let chart = timeline.ascii(Duration::from_millis(10));
/// assert!(chart.contains("===|"));
/// assert!(chart.contains("...===|"));
/// assert!(timeline.svg("saves").starts_with("<svg"));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Timeline {
    recording: Arc<Mutex<Recording>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    /// An empty timeline whose time 0 is now.
    pub fn new() -> Self {
        Timeline {
            recording: Arc::new(Mutex::new(Recording {
                origin: Instant::now(),
                lanes: Vec::new(),
                by_id: BTreeMap::new(),
            })),
        }
    }

    /// A watcher that records into this timeline.
    pub fn watcher(&self) -> impl Fn(&Event) + Send + Sync + 'static {
        let timeline = self.clone();
        move |event| timeline.record(event)
    }

    /// Records one event, at the current time.
    pub fn record(&self, event: &Event) {
        let mut recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let at = recording.origin.elapsed();
        let id = event.ident().id();
        let phase = match event.kind() {
            EventKind::Admitted | EventKind::Dropped => {
                let index = recording.lanes.len();
                recording.lanes.push(Lane {
                    label: event.ident().to_string(),
                    queue: event.queue().to_owned(),
                    phases: Vec::new(),
                    arrived: at,
                    end: matches!(event.kind(), EventKind::Dropped).then_some((at, End::Dropped)),
                });
                recording.by_id.insert(id, index);
                return;
            }
            EventKind::Waiting => Phase::Waiting,
            EventKind::Started | EventKind::Resumed | EventKind::Suspended => Phase::Running,
            EventKind::WaitingForChildren => Phase::Children,
            EventKind::Finished | EventKind::Failed(_) | EventKind::Cancelled { .. } => {
                let end = match event.kind() {
                    EventKind::Finished => End::Finished,
                    EventKind::Failed(_) => End::Failed,
                    _ => End::Cancelled,
                };
                if let Some(lane) = recording.lane(id) {
                    lane.end = Some((at, end));
                }
                return;
            }
            // Supervision events are not instances of a queue.
            _ => return,
        };
        if let Some(lane) = recording.lane(id) {
            if lane.phases.last().map(|(_, last)| *last) != Some(phase) {
                lane.phases.push((at, phase));
            }
        }
    }

    fn snapshot(&self) -> (Vec<Lane>, Duration) {
        let recording = self
            .recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = recording.origin.elapsed();
        let mut lanes = recording.lanes.clone();
        // Grouped by queue (in order of first appearance), then by arrival.
        let mut queues: Vec<String> = Vec::new();
        for lane in &lanes {
            if !queues.contains(&lane.queue) {
                queues.push(lane.queue.clone());
            }
        }
        lanes.sort_by_key(|lane| queues.iter().position(|queue| *queue == lane.queue));
        let span = lanes
            .iter()
            .map(|lane| lane.end.map_or(now, |(end, _)| end))
            .max()
            .unwrap_or_default();
        (lanes, span)
    }

    /// The timeline as text, one column per `scale` of time (at least 1 µs), one line per
    /// instance:
    /// `.` waiting for a slot, `=` running (or waiting on its futures), `+` waiting for
    /// children; the end is marked `|` finished, `x` cancelled, `!` failed, `D` dropped.
    pub fn ascii(&self, scale: Duration) -> String {
        let scale = scale.max(Duration::from_micros(1));
        let (lanes, span) = self.snapshot();
        let columns = columns(span, scale) + 1;
        let width = lanes.iter().map(|lane| lane.label.len()).max().unwrap_or(0) + 2;
        let mut out = String::new();
        // The axis: a label every 10 columns.
        let mut axis = " ".repeat(width);
        let mut ticks = " ".repeat(width);
        for column in (0..columns).step_by(10) {
            let label = format!("{}ms", (scale * column as u32).as_millis());
            let at = width + column;
            pad_to(&mut axis, at);
            axis.push_str(&label);
            pad_to(&mut ticks, at);
            ticks.push('|');
        }
        let _ = writeln!(out, "{}", axis.trim_end());
        let _ = writeln!(out, "{}", ticks.trim_end());
        let mut queue = None;
        for lane in &lanes {
            if queue != Some(&lane.queue) {
                queue = Some(&lane.queue);
                let _ = writeln!(out, "[{}]", lane.queue);
            }
            let mut line = format!("{:width$}", lane.label);
            let end_column = lane.end.map(|(end, _)| columns_floor(end, scale));
            for column in 0..columns {
                if end_column == Some(column) {
                    line.push(lane.end.map_or(' ', |(_, end)| end.ascii()));
                    break;
                }
                line.push(match lane.phase_at(scale * column as u32) {
                    None => ' ',
                    Some(Phase::Waiting) => '.',
                    Some(Phase::Running) => '=',
                    Some(Phase::Children) => '+',
                });
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let _ = writeln!(
            out,
            "legend: = running  . waiting for a slot  + waiting for children  | finished  x cancelled  ! failed  D dropped"
        );
        out
    }

    /// The timeline as an SVG picture titled `title`: one lane per instance (grouped by
    /// queue), bars for the time it waited for a slot, ran, or waited for children, a mark
    /// for how it ended, a time axis and a legend.
    pub fn svg(&self, title: &str) -> String {
        const LABEL: f64 = 150.0;
        const LANE: f64 = 26.0;
        const TOP: f64 = 56.0;
        const PLOT: f64 = 640.0;
        let (lanes, span) = self.snapshot();
        let span_ms = (span.as_secs_f64() * 1000.0).max(1.0);
        let step = axis_step(span_ms);
        let axis_end = (span_ms / step).ceil() * step;
        let x = |at: Duration| LABEL + at.as_secs_f64() * 1000.0 / axis_end * PLOT;
        let height = TOP + LANE * lanes.len() as f64 + 60.0;
        let width = LABEL + PLOT + 30.0;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="monospace" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="18" font-size="14" font-weight="bold">{}</text>"#,
            escape(title)
        );
        // The time axis.
        let _ = writeln!(svg, r#"<g class="axis">"#);
        let mut tick = 0.0;
        while tick <= axis_end + f64::EPSILON {
            let at = LABEL + tick / axis_end * PLOT;
            let bottom = TOP + LANE * lanes.len() as f64;
            let _ = writeln!(
                svg,
                r##"<line x1="{at:.1}" y1="{:.1}" x2="{at:.1}" y2="{bottom:.1}" stroke="#ddd"/><text x="{at:.1}" y="{:.1}" text-anchor="middle">{tick}ms</text>"##,
                TOP - 14.0,
                TOP - 18.0
            );
            tick += step;
        }
        let _ = writeln!(svg, "</g>");
        for (row, lane) in lanes.iter().enumerate() {
            let y = TOP + LANE * row as f64;
            let _ = writeln!(
                svg,
                r#"<g class="lane" data-ident="{}" data-queue="{}">"#,
                escape(&lane.label),
                escape(&lane.queue)
            );
            let _ = writeln!(
                svg,
                r#"<text x="10" y="{:.1}">{}</text>"#,
                y + 17.0,
                escape(&lane.label)
            );
            for (from, to, phase) in lane.segments(span) {
                let (fill, class) = match phase {
                    Phase::Waiting => ("#d9d9d9", "waiting"),
                    Phase::Running => ("#4e79a7", "running"),
                    Phase::Children => ("#f28e2b", "children"),
                };
                let _ = writeln!(
                    svg,
                    r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="14" fill="{fill}"/>"#,
                    x(from),
                    y + 6.0,
                    (x(to) - x(from)).max(1.0)
                );
            }
            if let Some((at, end)) = lane.end {
                let _ = writeln!(svg, "{}", end_mark(end, x(at), y + 13.0));
            }
            let _ = writeln!(svg, "</g>");
        }
        // The legend.
        let y = TOP + LANE * lanes.len() as f64 + 30.0;
        let _ = writeln!(svg, r#"<g class="legend">"#);
        let mut at = 10.0;
        for (fill, label) in [
            ("#4e79a7", "running"),
            ("#d9d9d9", "waiting for a slot"),
            ("#f28e2b", "waiting for children"),
        ] {
            let _ = writeln!(
                svg,
                r#"<rect x="{at}" y="{:.1}" width="14" height="10" fill="{fill}"/><text x="{}" y="{y:.1}">{label}</text>"#,
                y - 9.0,
                at + 18.0
            );
            at += 24.0 + 7.5 * label.len() as f64;
        }
        for (end, label) in [
            (End::Finished, "finished"),
            (End::Cancelled, "cancelled"),
            (End::Failed, "failed"),
            (End::Dropped, "dropped"),
        ] {
            let _ = writeln!(
                svg,
                r#"{}<text x="{}" y="{y:.1}">{label}</text>"#,
                end_mark(end, at + 6.0, y - 4.0),
                at + 16.0
            );
            at += 30.0 + 7.5 * label.len() as f64;
        }
        let _ = writeln!(svg, "</g>");
        svg.push_str("</svg>\n");
        svg
    }
}

impl Recording {
    fn lane(&mut self, id: u64) -> Option<&mut Lane> {
        let index = *self.by_id.get(&id)?;
        self.lanes.get_mut(index)
    }
}

/// Distinct marks for the ways an instance ends.
fn end_mark(end: End, x: f64, y: f64) -> String {
    match end {
        End::Finished => {
            format!(r##"<circle class="finished" cx="{x:.1}" cy="{y:.1}" r="5" fill="#59a14f"/>"##)
        }
        End::Cancelled => format!(
            r##"<path class="cancelled" d="M{:.1} {:.1} L{:.1} {:.1} M{:.1} {:.1} L{:.1} {:.1}" stroke="#e15759" stroke-width="3"/>"##,
            x - 5.0,
            y - 5.0,
            x + 5.0,
            y + 5.0,
            x - 5.0,
            y + 5.0,
            x + 5.0,
            y - 5.0
        ),
        End::Failed => format!(
            r##"<path class="failed" d="M{x:.1} {:.1} L{:.1} {:.1} L{:.1} {:.1} Z" fill="#b07aa1"/>"##,
            y - 6.0,
            x + 6.0,
            y + 5.0,
            x - 6.0,
            y + 5.0
        ),
        End::Dropped => format!(
            r##"<path class="dropped" d="M{x:.1} {:.1} L{:.1} {y:.1} L{x:.1} {:.1} L{:.1} {y:.1} Z" fill="none" stroke="#555" stroke-width="2"/>"##,
            y - 6.0,
            x + 6.0,
            y + 6.0,
            x - 6.0
        ),
    }
}

/// The smallest round tick spacing (1, 2 or 5 times a power of ten) giving at most ten
/// ticks.
fn axis_step(span_ms: f64) -> f64 {
    let mut magnitude = 1.0;
    loop {
        for factor in [1.0, 2.0, 5.0] {
            let step = factor * magnitude;
            if span_ms / step <= 10.0 {
                return step;
            }
        }
        magnitude *= 10.0;
    }
}

fn columns(span: Duration, scale: Duration) -> usize {
    (span.as_nanos().div_ceil(scale.as_nanos())) as usize
}

fn columns_floor(at: Duration, scale: Duration) -> usize {
    (at.as_nanos() / scale.as_nanos()) as usize
}

fn pad_to(line: &mut String, at: usize) {
    while line.len() < at {
        line.push(' ');
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::axis_step;

    #[test]
    fn axis_steps_are_round_and_give_at_most_ten_ticks() {
        assert_eq!(axis_step(8.0), 1.0);
        assert_eq!(axis_step(330.0), 50.0);
        assert_eq!(axis_step(500.0), 50.0);
        assert_eq!(axis_step(1500.0), 200.0);
    }
}
