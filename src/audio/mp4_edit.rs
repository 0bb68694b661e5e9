//! Where the first audio track of an MP4/M4A file starts playing, from its edit list (`elst`).
//! AAC encoders put priming frames before the audio (1024 for ffmpeg and FDK, 2112 for Apple's
//! encoder) and write an edit list that skips them; players and ffmpeg honour it, symphonia 0.5
//! reads it but does not apply it, so the decoder drops those frames itself.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The start of the presentation in the track's media time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EditStart {
    pub media_time: u64,
    /// Units per second of `media_time` (the track's `mdhd` timescale).
    pub timescale: u32,
}

impl EditStart {
    /// Frames at `rate` before the presentation starts.
    pub fn frames(&self, rate: u32) -> u64 {
        (self.media_time as f64 * rate as f64 / self.timescale.max(1) as f64).round() as u64
    }
}

/// The edit start of the first sound track of `path`; `None` when the file is not MP4 or the
/// track has no edit list (it then plays from its first frame, as in ffmpeg).
pub fn audio_start(path: &Path) -> Option<EditStart> {
    let moov = read_moov(&mut File::open(path).ok()?)?;
    let track = boxes(&moov)
        .filter(|(kind, _)| kind == b"trak")
        .find(|(_, trak)| handler(trak).as_ref() == Some(b"soun"))?
        .1;
    let mdia = child(track, b"mdia")?;
    let mdhd = child(mdia, b"mdhd")?;
    let timescale = match mdhd.first()? {
        1 => u32_at(mdhd, 20)?,
        _ => u32_at(mdhd, 12)?,
    };
    let elst = child(child(track, b"edts")?, b"elst")?;
    let version = *elst.first()?;
    let count = u32_at(elst, 4)? as usize;
    let entry = if version == 1 { 20 } else { 12 };
    // The first entry that is not an empty edit (media time -1: a pause before the track).
    (0..count).find_map(|i| {
        let at = 8 + i * entry;
        let media_time = match version {
            1 => i64::from_be_bytes(elst.get(at + 8..at + 16)?.try_into().ok()?),
            _ => i32::from_be_bytes(elst.get(at + 4..at + 8)?.try_into().ok()?) as i64,
        };
        (media_time >= 0).then_some(EditStart {
            media_time: media_time as u64,
            timescale,
        })
    })
}

/// The `moov` box's body, found by walking the top-level boxes (it may follow gigabytes of
/// `mdat`, which are skipped, not read).
fn read_moov(file: &mut File) -> Option<Vec<u8>> {
    let length = file.metadata().ok()?.len();
    let mut at = 0u64;
    while at + 8 <= length {
        let mut head = Vec::with_capacity(16);
        file.seek(SeekFrom::Start(at)).ok()?;
        (&mut *file).take(16).read_to_end(&mut head).ok()?;
        let (kind, header, size) = box_header(&head, length - at)?;
        if size > length - at {
            return None; // cut off, or a corrupt size: nothing to allocate for
        }
        if &kind == b"moov" {
            file.seek(SeekFrom::Start(at + header)).ok()?;
            let mut body = vec![0u8; (size - header) as usize];
            file.read_exact(&mut body).ok()?;
            return Some(body);
        }
        at += size;
    }
    None
}

/// The header at the start of `bytes`: (type, header length, box length). A 32-bit size of 1
/// means a 64-bit size follows; 0 means the box runs to the end of what holds it
/// (`to_end` bytes). `None` when the header is cut off or the size is shorter than the header.
fn box_header(bytes: &[u8], to_end: u64) -> Option<([u8; 4], u64, u64)> {
    let kind: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
    let (header, size) = match u32_at(bytes, 0)? {
        1 => (16, u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?)),
        0 => (8, to_end),
        size => (8, size as u64),
    };
    (size >= header).then_some((kind, header, size))
}

/// The boxes directly in `data`: (type, body).
fn boxes(data: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (kind, header, size) = box_header(rest, rest.len() as u64)?;
        let body = rest.get(header as usize..size as usize)?;
        rest = &rest[size as usize..];
        Some((kind, body))
    })
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    boxes(data).find(|(k, _)| k == kind).map(|(_, body)| body)
}

/// A track's handler type (`soun`, `vide`, ...).
fn handler(trak: &[u8]) -> Option<[u8; 4]> {
    let hdlr = child(child(trak, b"mdia")?, b"hdlr")?;
    hdlr.get(8..12)?.try_into().ok()
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    /// A track: `mdhd` (version 0 or 1) with `timescale`, a handler, and an edit list of
    /// (duration, media time) entries when given.
    fn trak(
        handler: &[u8; 4],
        version: u8,
        timescale: u32,
        edits: Option<&[(u64, i64)]>,
    ) -> Vec<u8> {
        let mut mdhd = vec![version, 0, 0, 0];
        let times = if version == 1 { 16 } else { 8 };
        mdhd.extend(vec![0u8; times]);
        mdhd.extend(timescale.to_be_bytes());
        mdhd.extend(vec![0u8; if version == 1 { 12 } else { 8 }]);
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(handler);
        hdlr.extend(vec![0u8; 13]);
        let mdia = [mp4_box(b"mdhd", &mdhd), mp4_box(b"hdlr", &hdlr)].concat();
        let mut body = mp4_box(b"tkhd", &[0u8; 84]);
        if let Some(edits) = edits {
            let mut elst = vec![version, 0, 0, 0];
            elst.extend((edits.len() as u32).to_be_bytes());
            for &(duration, media_time) in edits {
                match version {
                    1 => {
                        elst.extend(duration.to_be_bytes());
                        elst.extend(media_time.to_be_bytes());
                    }
                    _ => {
                        elst.extend((duration as u32).to_be_bytes());
                        elst.extend((media_time as i32).to_be_bytes());
                    }
                }
                elst.extend([0, 1, 0, 0]);
            }
            body.extend(mp4_box(b"edts", &mp4_box(b"elst", &elst)));
        }
        body.extend(mp4_box(b"mdia", &mdia));
        mp4_box(b"trak", &body)
    }

    fn start_of(tracks: &[Vec<u8>]) -> Option<EditStart> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.m4a");
        let moov = mp4_box(b"moov", &tracks.concat());
        let file = [
            mp4_box(b"ftyp", b"M4A \0\0\0\0"),
            mp4_box(b"mdat", &[7u8; 5000]),
            moov,
        ]
        .concat();
        std::fs::write(&path, file).unwrap();
        audio_start(&path)
    }

    #[test]
    fn the_sound_tracks_first_edit_that_is_not_empty() {
        let video = trak(b"vide", 0, 24000, Some(&[(1000, 0)]));
        let sound = trak(b"soun", 0, 44100, Some(&[(500, -1), (1000, 2112)]));
        let start = start_of(&[video, sound]).unwrap();
        assert_eq!(
            start,
            EditStart {
                media_time: 2112,
                timescale: 44100
            }
        );
        assert_eq!(start.frames(44100), 2112);
        assert_eq!(start.frames(22050), 1056);
        let long = trak(b"soun", 1, 48000, Some(&[(1 << 40, 1024)]));
        assert_eq!(start_of(&[long]).unwrap().frames(48000), 1024);
        assert_eq!(start_of(&[trak(b"soun", 0, 44100, None)]), None);
        assert_eq!(start_of(&[trak(b"vide", 0, 44100, Some(&[(1, 5)]))]), None);
    }

    #[test]
    fn a_box_larger_than_the_file_ends_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corrupt.m4a");
        for kind in [b"moov", b"mdat"] {
            // A 64-bit size far past the end: not allocated, not added to the position.
            let mut huge = 1u32.to_be_bytes().to_vec();
            huge.extend_from_slice(kind);
            huge.extend(u64::MAX.to_be_bytes());
            let sound = trak(b"soun", 0, 44100, Some(&[(1000, 1024)]));
            let file = [
                mp4_box(b"ftyp", b"M4A \0\0\0\0"),
                huge,
                mp4_box(b"moov", &sound),
            ]
            .concat();
            std::fs::write(&path, file).unwrap();
            assert_eq!(
                audio_start(&path),
                None,
                "{}",
                String::from_utf8_lossy(kind)
            );
        }
    }
}
