//! Progress bars for long passes: images done, images/s, ETA and the running loss.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over the images of one pass. Hidden when disabled or when stderr is not a terminal.
#[derive(Debug)]
pub struct PassProgress {
    bar: ProgressBar,
}

impl PassProgress {
    /// A bar titled `title` over `total` images.
    pub fn new(title: String, total: usize, enabled: bool) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(total as u64),
            if enabled {
                ProgressDrawTarget::stderr()
            } else {
                ProgressDrawTarget::hidden()
            },
        );
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{bar:28.cyan/blue}] {pos}/{len} img  {per_sec:>10}  ETA {eta:>4}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(title);
        Self { bar }
    }

    /// `images` more done; `msg` shows the running loss.
    pub fn advance(&self, images: usize, msg: String) {
        self.bar.inc(images as u64);
        self.bar.set_message(msg);
    }

    /// Removes the bar (the epoch summary line replaces it).
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
