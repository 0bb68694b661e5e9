//! The discriminators HiFT is trained against (CosyVoice's recipe; not part of the exported
//! decoder): HiFi-GAN's multi-period discriminator (periods 2, 3, 5, 7, 11) and UnivNet's
//! multi-resolution spectrogram discriminator ((n_fft, hop, win) = (1024, 120, 600),
//! (2048, 240, 1200), (512, 50, 240)). Widths scale with `channels` (32 = the published sizes:
//! MPD 32/128/512/1024/1024, MRD 32). Weight norm on every convolution, LeakyReLU 0.1.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::checkpoint::tensors::TensorError;
use crate::models::layers::{conv1d, lrelu, pad_reflect, Builder, Conv1d, Conv2d, ConvSpec};

pub const PERIODS: [usize; 5] = [2, 3, 5, 7, 11];
pub const RESOLUTIONS: [(usize, usize, usize); 3] =
    [(1024, 120, 600), (2048, 240, 1200), (512, 50, 240)];
const SLOPE: f64 = 0.1;

/// What one sub-discriminator returns: its score map (flattened to [b, n]) and every
/// intermediate feature map (flattened), for the feature-matching loss.
pub struct Judgement<B: Backend> {
    pub score: Tensor<B, 2>,
    pub features: Vec<Tensor<B, 2>>,
}

fn flat<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 2> {
    let batch = x.dims()[0];
    x.reshape([batch as i32, -1])
}

/// HiFi-GAN's DiscriminatorP: the waveform folded into `period` columns, (5 x 1) convolutions
/// along time (computed as 1-D convolutions over each column).
#[derive(Module, Debug)]
pub struct PeriodDiscriminator<B: Backend> {
    pub convs: Vec<Conv1d<B>>,
    pub conv_post: Conv1d<B>,
    pub period: usize,
}

impl<B: Backend> PeriodDiscriminator<B> {
    fn new(b: &Builder<B>, name: &str, period: usize, c: usize) -> Result<Self, TensorError> {
        let widths = [1, c, 4 * c, 16 * c, 32 * c];
        let mut convs = Vec::new();
        for i in 0..4 {
            convs.push(Conv1d::new(
                b,
                &format!("{name}.convs.{i}"),
                ConvSpec::new(widths[i], widths[i + 1], 5)
                    .stride(3, 2)
                    .weight_norm(),
            )?);
        }
        convs.push(Conv1d::new(
            b,
            &format!("{name}.convs.4"),
            ConvSpec::same(32 * c, 32 * c, 5, 1).weight_norm(),
        )?);
        Ok(PeriodDiscriminator {
            convs,
            conv_post: Conv1d::new(
                b,
                &format!("{name}.conv_post"),
                ConvSpec::same(32 * c, 1, 3, 1).weight_norm(),
            )?,
            period,
        })
    }

    fn forward(&self, wave: Tensor<B, 2>) -> Judgement<B> {
        let [batch, samples] = wave.dims();
        let p = self.period;
        let pad = (p - samples % p) % p;
        let wave = pad_reflect(wave.unsqueeze_dim(1), 0, pad);
        let rows = (samples + pad) / p;
        let mut x = wave
            .reshape([batch, rows, p])
            .swap_dims(1, 2)
            .reshape([batch * p, 1, rows]);
        let mut features = Vec::new();
        for conv in &self.convs {
            x = lrelu(conv.forward(x), SLOPE);
            features.push(flat(x.clone().reshape([batch as i32, p as i32, -1])));
        }
        let score = self.conv_post.forward(x);
        let score = flat(score.reshape([batch as i32, p as i32, -1]));
        features.push(score.clone());
        Judgement { score, features }
    }
}

/// UnivNet's DiscriminatorR: 2-D convolutions over the linear magnitude spectrogram.
#[derive(Module, Debug)]
pub struct ResolutionDiscriminator<B: Backend> {
    pub convs: Vec<Conv2d<B>>,
    pub conv_post: Conv2d<B>,
    pub n_fft: usize,
    pub hop: usize,
    pub win: usize,
    /// The windowed DFT rows [2 * bins, 1, n_fft], kept on the device (a constant, not a
    /// parameter): built once, not uploaded on every forward.
    pub basis: Tensor<B, 3>,
}

impl<B: Backend> ResolutionDiscriminator<B> {
    fn new(
        b: &Builder<B>,
        name: &str,
        (n_fft, hop, win): (usize, usize, usize),
        c: usize,
    ) -> Result<Self, TensorError> {
        let mut convs = vec![Conv2d::new(
            b,
            &format!("{name}.convs.0"),
            1,
            c,
            [3, 9],
            [1, 1],
            [1, 4],
            true,
        )?];
        for i in 1..4 {
            convs.push(Conv2d::new(
                b,
                &format!("{name}.convs.{i}"),
                c,
                c,
                [3, 9],
                [1, 2],
                [1, 4],
                true,
            )?);
        }
        convs.push(Conv2d::new(
            b,
            &format!("{name}.convs.4"),
            c,
            c,
            [3, 3],
            [1, 1],
            [1, 1],
            true,
        )?);
        Ok(ResolutionDiscriminator {
            convs,
            conv_post: Conv2d::new(
                b,
                &format!("{name}.conv_post"),
                c,
                1,
                [3, 3],
                [1, 1],
                [1, 1],
                true,
            )?,
            n_fft,
            hop,
            win,
            basis: Tensor::from_data(
                TensorData::new(dft_basis(n_fft, win), [2 * (n_fft / 2 + 1), 1, n_fft]),
                &b.device,
            ),
        })
    }

    /// |STFT| [b, 1, bins, frames]: reflect padding (n_fft - hop) / 2, no centering, a Hann
    /// window of `win` samples centred in `n_fft`.
    fn spectrogram(&self, wave: Tensor<B, 2>) -> Tensor<B, 4> {
        let [batch, _] = wave.dims();
        let bins = self.n_fft / 2 + 1;
        let pad = (self.n_fft - self.hop) / 2;
        let spec = conv1d(
            pad_reflect(wave.unsqueeze_dim(1), pad, pad),
            self.basis.clone(),
            None,
            self.hop,
            1,
        );
        let frames = spec.dims()[2];
        let re = spec.clone().slice([0..batch, 0..bins, 0..frames]);
        let im = spec.slice([0..batch, bins..2 * bins, 0..frames]);
        (re.powi_scalar(2) + im.powi_scalar(2) + 1e-9)
            .sqrt()
            .unsqueeze_dim(1)
    }

    fn forward(&self, wave: Tensor<B, 2>) -> Judgement<B> {
        let mut x = self.spectrogram(wave);
        let mut features = Vec::new();
        for conv in &self.convs {
            x = lrelu(conv.forward(x), SLOPE);
            features.push(flat(x.clone()));
        }
        let score = flat(self.conv_post.forward(x));
        features.push(score.clone());
        Judgement { score, features }
    }
}

#[derive(Module, Debug)]
pub struct Discriminators<B: Backend> {
    pub mpd: Vec<PeriodDiscriminator<B>>,
    pub mrd: Vec<ResolutionDiscriminator<B>>,
}

impl<B: Backend> Discriminators<B> {
    pub fn new(b: &Builder<B>, channels: usize) -> Result<Self, TensorError> {
        Ok(Discriminators {
            mpd: PERIODS
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    PeriodDiscriminator::new(b, &format!("mpd.discriminators.{i}"), p, channels)
                })
                .collect::<Result<_, _>>()?,
            mrd: RESOLUTIONS
                .iter()
                .enumerate()
                .map(|(i, &r)| {
                    ResolutionDiscriminator::new(b, &format!("mrd.discriminators.{i}"), r, channels)
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Every sub-discriminator's judgement of `wave` [b, samples].
    pub fn forward(&self, wave: Tensor<B, 2>) -> Vec<Judgement<B>> {
        let mut out: Vec<Judgement<B>> = self.mpd.iter().map(|d| d.forward(wave.clone())).collect();
        out.extend(self.mrd.iter().map(|d| d.forward(wave.clone())));
        out
    }
}

/// Windowed DFT rows (real parts, then imaginary parts) for an `n_fft`-point transform with a
/// Hann window of `win` samples centred in the frame.
fn dft_basis(n_fft: usize, win: usize) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let offset = (n_fft - win) / 2;
    let mut basis = vec![0f32; 2 * bins * n_fft];
    for k in 0..bins {
        for n in 0..win {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / win as f64).cos();
            let i = n + offset;
            let angle = 2.0 * std::f64::consts::PI * ((k * i) % n_fft) as f64 / n_fft as f64;
            basis[k * n_fft + i] = (w * angle.cos()) as f32;
            basis[(bins + k) * n_fft + i] = (-w * angle.sin()) as f32;
        }
    }
    basis
}
