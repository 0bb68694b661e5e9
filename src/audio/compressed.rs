//! FLAC, MP3, Ogg Vorbis, and AAC or ALAC in MP4/M4A or Matroska, with symphonia. A segment is
//! read by seeking to its start and decoding only up to its end, so a line of a two-hour
//! episode costs the memory of that line, not of the episode.

use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::units::{Time, TimeBase};

use super::error::{check_decoded_span, frame_span, AudioError, Segment};
use super::mp4_edit;
use super::Audio;

/// Why symphonia could not read a file: its format or codec is one it does not have (another
/// decoder, ffmpeg, may), or the file is broken.
pub enum Failure {
    Unsupported(String),
    Failed(AudioError),
}

impl From<AudioError> for Failure {
    fn from(e: AudioError) -> Self {
        Failure::Failed(e)
    }
}

/// Decodes the first audio track of `path` to mono; with `segment`, only that span.
pub fn read(path: &Path, segment: Segment) -> Result<Audio, Failure> {
    let format = open(path)?;
    let edit_start = is_mp4(path).then(|| mp4_edit::audio_start(path)).flatten();
    decode(format, segment, edit_start)
}

/// The languages of the audio tracks of `path` in file order (`None`: not tagged); empty when
/// symphonia cannot open the file. Every decoder here reads the first one.
pub fn audio_track_languages(path: &Path) -> Vec<Option<String>> {
    match open(path) {
        Ok(format) => format
            .tracks()
            .iter()
            .filter(|t| t.codec_params.sample_rate.is_some())
            .map(|t| t.language.clone())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The container of `path`, opened by symphonia.
fn open(path: &Path) -> Result<Box<dyn FormatReader>, Failure> {
    let file = std::fs::File::open(path).map_err(|e| AudioError::Unreadable(e.to_string()))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    // Gapless: the encoder's delay and padding (MP3, AAC) are trimmed, so times match what
    // other players (and ffmpeg) show.
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &format_options, &MetadataOptions::default())
        // A file symphonia cannot even open as a container may still be one ffmpeg reads.
        .map_err(|e| Failure::Unsupported(format!("not a format symphonia recognizes ({e})")))?;
    Ok(probed.format)
}

/// Whether `path` is an MP4/M4A file (an `ftyp` box first).
fn is_mp4(path: &Path) -> bool {
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|_| &head[4..8] == b"ftyp")
}

/// Audio decoded before a segment's start and dropped (several frames of every lossy codec).
const PRE_ROLL_SECONDS: f64 = 0.25;

fn decode(
    mut format: Box<dyn FormatReader>,
    segment: Segment,
    edit_start: Option<mp4_edit::EditStart>,
) -> Result<Audio, Failure> {
    let audio_tracks = || {
        format
            .tracks()
            .iter()
            .filter(|t| t.codec_params.sample_rate.is_some())
    };
    let track = match audio_tracks().find(|t| t.codec_params.codec != CODEC_TYPE_NULL) {
        Some(track) => track.clone(),
        // Matroska names codecs symphonia has no type for (AC-3, DTS) as the null codec.
        None if audio_tracks().next().is_some() => {
            return Err(Failure::Unsupported(
                "an audio codec symphonia does not decode".into(),
            ))
        }
        None => return Err(AudioError::Undecodable("no audio track".into()).into()),
    };
    let params = &track.codec_params;
    let rate = params.sample_rate.unwrap_or_default();
    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => {
                let codec = symphonia::default::get_codecs()
                    .get_codec(params.codec)
                    .map_or_else(
                        || format!("codec {}", params.codec),
                        |c| c.short_name.to_string(),
                    );
                Failure::Unsupported(format!("{codec} audio"))
            }
            e => Failure::Failed(AudioError::Undecodable(e.to_string())),
        })?;
    // Timestamps and the declared length in frames (the time base is 1/rate for most audio
    // formats, the track's timescale in MP4, milliseconds in Matroska).
    let time_base = params.time_base.unwrap_or(TimeBase::new(1, rate));
    let to_frames = |ts: u64| -> u64 {
        let time = time_base.calc_time(ts);
        (time.seconds as f64 * rate as f64 + time.frac * rate as f64).round() as u64
    };
    // MP4's edit list skips the encoder's priming frames (AAC: 1024, or 2112 from Apple's).
    let lead = edit_start.map_or(0, |e| e.frames(rate));
    // Frames of the stream from here on; the segment is in the listener's time (after `lead`).
    let declared = params.n_frames.map(|n| to_frames(n).saturating_sub(lead));
    let (first, last) = frame_span(segment, declared, rate)?;
    let (first, last) = (first + lead, last.saturating_add(lead));
    // Lossy codecs need the audio before a seek point to decode it (MP3's bit reservoir, the
    // overlapping transforms of MP3, AAC and Vorbis): seek a little earlier and drop the rest.
    let pre_roll = (PRE_ROLL_SECONDS * rate as f64) as u64;
    if first > lead + pre_roll {
        let time = Time::from((first - pre_roll) as f64 / rate as f64);
        let to = SeekTo::Time {
            time,
            track_id: Some(track.id),
        };
        format
            .seek(SeekMode::Accurate, to)
            .map_err(|e| AudioError::Undecodable(format!("cannot seek to the segment: {e}")))?;
        decoder.reset();
    }
    let mut samples: Vec<f32> =
        Vec::with_capacity(last.saturating_sub(first).min(1 << 24) as usize);
    let mut buffer: Option<SampleBuffer<f32>> = None;
    // Frames decoded up to here (the next packet's first frame when it carries no timestamp).
    let mut decoded_to = first;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            // A chained stream (new Ogg logical stream): the segment's audio ends here.
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Undecodable(e.to_string()).into()),
        };
        if packet.track_id() != track.id {
            continue;
        }
        let start = to_frames(packet.ts());
        if start >= last {
            break;
        }
        let decoded = decoder.decode(&packet).map_err(|e| {
            AudioError::Undecodable(format!(
                "corrupt audio at {:.3} s: {e}",
                start as f64 / rate as f64
            ))
        })?;
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let frames = decoded.frames();
        if buffer
            .as_ref()
            .is_none_or(|b| b.capacity() < frames * channels)
        {
            buffer = Some(SampleBuffer::new(decoded.capacity() as u64, spec));
        }
        let buf = buffer.as_mut().expect("allocated above");
        buf.copy_interleaved_ref(decoded);
        let mono = Audio::from_interleaved(buf.samples().to_vec(), channels, rate).samples;
        // Keep the part of this packet inside [first, last).
        let skip = first.saturating_sub(start) as usize;
        let keep = (last.saturating_sub(start) as usize).min(mono.len());
        if skip < keep {
            samples.extend_from_slice(&mono[skip..keep]);
        }
        decoded_to = start + mono.len() as u64;
    }
    match declared {
        // The header promised this span: a stream that ends early is a truncated file. (A
        // tenth of a second of leeway: frame counts from MP3 headers are estimates.)
        Some(declared) => {
            if decoded_to + rate as u64 / 10 < last.min(declared + lead) {
                return Err(AudioError::Truncated {
                    declared,
                    found: decoded_to.saturating_sub(lead),
                }
                .into());
            }
        }
        None => check_decoded_span(segment, decoded_to.saturating_sub(lead), rate)?,
    }
    Ok(Audio { samples, rate })
}
