//! Everything a view or menu can ask for. Widgets never mutate app state directly: they push a
//! [`Command`] and the app applies all of them in one place at the end of the frame.

use super::views::export::FigureKind;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Show the open-checkpoint dialog.
    OpenDialog,
    /// Show the open-GGUF dialog.
    OpenGgufDialog,
    /// Load this checkpoint (folder, config.json, .safetensors or .gguf).
    Load(PathBuf),
    CancelLoad,
    /// Show the open-trace dialog.
    OpenTraceDialog,
    /// Read a trace file and show it in the views (the loaded model stays loaded).
    OpenTrace(PathBuf),
    /// Select a token (column) and MoE layer (index into the trace's `moe_layers`).
    Select {
        token: usize,
        moe_layer: usize,
    },
    SelectLayer(usize),
    DismissError(usize),
    /// Ask where to save a figure, then write it.
    ExportFigure(FigureKind),
    /// Ask where to save the trace as JSON or CSV, then write it.
    ExportData,
    /// Write a file chosen by a dialog (the dialog thread answered).
    WriteFigure(FigureKind, PathBuf),
    WriteData(PathBuf),
    /// Re-run the current input (device or dtype changed, or a reload).
    Rerun,
    Reload,
    FocusPrompt,
    /// Keep the views' run as run B, which later runs are compared with.
    PinRun,
    Unpin,
    /// Show the open-trace dialog for run B.
    OpenReferenceDialog,
    /// Read a trace file as run B.
    OpenReference(PathBuf),
    /// Ask where to save the A/B comparison as JSON, then write it.
    ExportComparison,
    WriteComparison(PathBuf),
    /// Ask where to save the open corpus's domain × expert figure of this MoE layer.
    ExportCorpusFigure(usize),
    WriteCorpusFigure(usize, PathBuf),
    /// Show the corpus view (true) or the run's views.
    ShowCorpus(bool),
    CloseCorpus,
    /// Ask for a folder of documents and where to write the corpus file, then run it.
    RunCorpusDialog,
    RunCorpus {
        data: PathBuf,
        out: PathBuf,
    },
    /// Stop the corpus run; what was counted is written and shown.
    StopCorpus,
}
