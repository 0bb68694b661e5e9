//! `hift`: GLM-4-Voice-Decoder's vocoder (CosyVoice's HiFTGenerator: neural source filter +
//! iSTFTNet). State-dict names: `f0_predictor.condnet.{0,2,4,6,8}`, `f0_predictor.classifier`,
//! `m_source.l_linear`, `conv_pre`, `ups.N`, `source_downs.N`, `source_resblocks.N`,
//! `resblocks.N` (`convs1.M`, `convs2.M`, `activations1.M.alpha`, `activations2.M.alpha`),
//! `conv_post`; weight-normed layers hold `weight_g` / `weight_v`. Facts:
//! ../shared/reference/glm-4-voice.md section 5.

pub mod discriminators;
pub mod source;
pub mod stft;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::checkpoint::tensors::TensorError;
use crate::models::decoder::config::HiftConfig;
use crate::models::layers::{
    elu, lrelu, pad_reflect, Builder, Conv1d, ConvSpec, ConvTranspose1d, Fill, Linear,
};
use crate::models::to_host_f32;
use crate::rng::Rng;
use source::{harmonic_waves, SourceNoise};

/// Snake activation `x + sin^2(alpha x) / alpha` with one alpha per channel (linear scale).
#[derive(Module, Debug)]
pub struct Snake<B: Backend> {
    pub alpha: Param<Tensor<B, 1>>,
}

impl<B: Backend> Snake<B> {
    fn new(b: &Builder<B>, name: &str, channels: usize) -> Result<Self, TensorError> {
        Ok(Snake {
            alpha: b.param(&format!("{name}.alpha"), [channels], Fill::Const(1.0))?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let channels = self.alpha.dims()[0];
        let alpha = self.alpha.val().reshape([1, channels, 1]);
        x.clone() + (x * alpha.clone()).sin().powi_scalar(2) / (alpha + 1e-9)
    }
}

/// HiFi-GAN residual block with Snake activations: for each dilation d,
/// x += conv2(snake(conv1_d(snake(x)))).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub convs1: Vec<Conv1d<B>>,
    pub convs2: Vec<Conv1d<B>>,
    pub activations1: Vec<Snake<B>>,
    pub activations2: Vec<Snake<B>>,
}

impl<B: Backend> ResBlock<B> {
    fn new(
        b: &Builder<B>,
        name: &str,
        channels: usize,
        kernel: usize,
        dilations: &[usize],
    ) -> Result<Self, TensorError> {
        let mut block = ResBlock {
            convs1: vec![],
            convs2: vec![],
            activations1: vec![],
            activations2: vec![],
        };
        for (i, &d) in dilations.iter().enumerate() {
            block.convs1.push(Conv1d::new(
                b,
                &format!("{name}.convs1.{i}"),
                ConvSpec::same(channels, channels, kernel, d).weight_norm(),
            )?);
            block.convs2.push(Conv1d::new(
                b,
                &format!("{name}.convs2.{i}"),
                ConvSpec::same(channels, channels, kernel, 1).weight_norm(),
            )?);
        }
        for i in 0..dilations.len() {
            block.activations1.push(Snake::new(
                b,
                &format!("{name}.activations1.{i}"),
                channels,
            )?);
        }
        for i in 0..dilations.len() {
            block.activations2.push(Snake::new(
                b,
                &format!("{name}.activations2.{i}"),
                channels,
            )?);
        }
        Ok(block)
    }

    fn forward(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for i in 0..self.convs1.len() {
            let h = self.convs1[i].forward(self.activations1[i].forward(x.clone()));
            x = x + self.convs2[i].forward(self.activations2[i].forward(h));
        }
        x
    }
}

/// ConvRNNF0Predictor: 5 x (weight-normed Conv1d k3 + ELU), Linear to one value, |.|.
#[derive(Module, Debug)]
pub struct F0Predictor<B: Backend> {
    /// `condnet.{2i}`
    pub condnet: Vec<Conv1d<B>>,
    pub classifier: Linear<B>,
}

impl<B: Backend> F0Predictor<B> {
    /// mel [b, 80, frames] -> F0 in Hz [b, frames].
    pub fn forward(&self, mel: Tensor<B, 3>) -> Tensor<B, 2> {
        let mut x = mel;
        for conv in &self.condnet {
            x = elu(conv.forward(x));
        }
        let [batch, _, frames] = x.dims();
        self.classifier
            .forward(x.swap_dims(1, 2))
            .reshape([batch, frames])
            .abs()
    }
}

/// `m_source`: the harmonic source's trainable part, l_linear (harmonics + 1 -> 1) + tanh.
#[derive(Module, Debug)]
pub struct SourceModule<B: Backend> {
    pub l_linear: Linear<B>,
}

#[derive(Module, Debug)]
pub struct Hift<B: Backend> {
    pub f0_predictor: F0Predictor<B>,
    pub m_source: SourceModule<B>,
    pub conv_pre: Conv1d<B>,
    pub ups: Vec<ConvTranspose1d<B>>,
    pub source_downs: Vec<Conv1d<B>>,
    pub source_resblocks: Vec<ResBlock<B>>,
    pub resblocks: Vec<ResBlock<B>>,
    pub conv_post: Conv1d<B>,
    pub kernels_per_stage: usize,
    pub lrelu_slope: f64,
    pub audio_limit: f64,
    pub n_fft: usize,
    pub hop: usize,
}

impl<B: Backend> Hift<B> {
    pub fn new(b: &Builder<B>, c: &HiftConfig) -> Result<Self, TensorError> {
        let f = &c.f0_predictor;
        let condnet = (0..5)
            .map(|i| {
                let input = if i == 0 {
                    f.in_channels
                } else {
                    f.cond_channels
                };
                Conv1d::new(
                    b,
                    &format!("f0_predictor.condnet.{}", 2 * i),
                    ConvSpec::same(input, f.cond_channels, 3, 1).weight_norm(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let base = c.base_channels;
        let spec_channels = c.istft_n_fft + 2;
        let mut ups = Vec::new();
        for (i, (&u, &k)) in c
            .upsample_rates
            .iter()
            .zip(&c.upsample_kernel_sizes)
            .enumerate()
        {
            let spec = ConvSpec::new(base >> i, base >> (i + 1), k)
                .stride(u, (k - u) / 2)
                .weight_norm();
            ups.push(ConvTranspose1d::new(b, &format!("ups.{i}"), spec)?);
        }
        // Source branch i meets the generator after upsample i: its STFT frames are downsampled
        // by the product of the later upsample rates.
        let n = c.upsample_rates.len();
        let mut source_downs = Vec::new();
        let mut source_resblocks = Vec::new();
        for i in 0..n {
            let rate: usize = c.upsample_rates[i + 1..].iter().product();
            let channels = base >> (i + 1);
            let spec = if rate == 1 {
                ConvSpec::new(spec_channels, channels, 1)
            } else {
                ConvSpec::new(spec_channels, channels, rate * 2).stride(rate, rate / 2)
            };
            source_downs.push(Conv1d::new(b, &format!("source_downs.{i}"), spec)?);
            source_resblocks.push(ResBlock::new(
                b,
                &format!("source_resblocks.{i}"),
                channels,
                c.source_resblock_kernel_sizes[i],
                &c.source_resblock_dilation_sizes[i],
            )?);
        }
        let mut resblocks = Vec::new();
        for i in 0..n {
            for (j, (&k, d)) in c
                .resblock_kernel_sizes
                .iter()
                .zip(&c.resblock_dilation_sizes)
                .enumerate()
            {
                let index = i * c.resblock_kernel_sizes.len() + j;
                resblocks.push(ResBlock::new(
                    b,
                    &format!("resblocks.{index}"),
                    base >> (i + 1),
                    k,
                    d,
                )?);
            }
        }
        Ok(Hift {
            f0_predictor: F0Predictor {
                condnet,
                classifier: Linear::new(
                    b,
                    "f0_predictor.classifier",
                    f.cond_channels,
                    f.num_class,
                    true,
                )?,
            },
            m_source: SourceModule {
                l_linear: Linear::new(b, "m_source.l_linear", c.nb_harmonics + 1, 1, true)?,
            },
            conv_pre: Conv1d::new(
                b,
                "conv_pre",
                ConvSpec::same(c.in_channels, base, 7, 1).weight_norm(),
            )?,
            ups,
            source_downs,
            source_resblocks,
            resblocks,
            conv_post: Conv1d::new(
                b,
                "conv_post",
                ConvSpec::same(base >> n, spec_channels, 7, 1).weight_norm(),
            )?,
            kernels_per_stage: c.resblock_kernel_sizes.len(),
            lrelu_slope: c.lrelu_slope,
            audio_limit: c.audio_limit,
            n_fft: c.istft_n_fft,
            hop: c.istft_hop_len,
        })
    }

    /// The source signal [b, 1, samples] from the harmonic waves [b, harmonics + 1, samples].
    pub fn source(&self, waves: Tensor<B, 3>) -> Tensor<B, 3> {
        self.m_source
            .l_linear
            .forward(waves.swap_dims(1, 2))
            .tanh()
            .swap_dims(1, 2)
    }

    /// mel [b, 80, frames] and the source [b, 1, frames * 256] -> waveform [b, frames * 256].
    pub fn decode(&self, mel: Tensor<B, 3>, source: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, samples] = source.dims();
        let s_stft = stft::stft(source.reshape([batch, samples]), self.n_fft, self.hop);
        let mut x = self.conv_pre.forward(mel);
        let stages = self.ups.len();
        for i in 0..stages {
            x = self.ups[i].forward(lrelu(x, self.lrelu_slope));
            if i + 1 == stages {
                x = pad_reflect(x, 1, 0);
            }
            let si = self.source_resblocks[i].forward(self.source_downs[i].forward(s_stft.clone()));
            x = x + si;
            let k = self.kernels_per_stage;
            let mut sum = self.resblocks[i * k].forward(x.clone());
            for j in 1..k {
                sum = sum + self.resblocks[i * k + j].forward(x.clone());
            }
            x = sum / k as f64;
        }
        let x = self.conv_post.forward(lrelu(x, 0.01));
        let [batch, channels, frames] = x.dims();
        let bins = self.n_fft / 2 + 1;
        let magnitude = x
            .clone()
            .slice([0..batch, 0..bins, 0..frames])
            .exp()
            .clamp_max(1e2);
        let phase = x.slice([0..batch, bins..channels, 0..frames]).sin();
        let spec = Tensor::cat(
            vec![
                magnitude.clone() * phase.clone().cos(),
                magnitude * phase.sin(),
            ],
            1,
        );
        stft::istft(spec, self.n_fft, self.hop).clamp(-self.audio_limit, self.audio_limit)
    }
}

/// Audio from mel: F0 predicted from the mel, its harmonic source (noise from `rng`), the
/// generator. Returns (waveform [b, samples], predicted F0 [b, frames]).
pub fn vocode<B: Backend>(
    hift: &Hift<B>,
    c: &HiftConfig,
    mel: Tensor<B, 3>,
    rng: &mut Rng,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [batch, _, frames] = mel.dims();
    let hop = c.samples_per_frame();
    let harmonics = c.nb_harmonics + 1;
    let f0 = hift.f0_predictor.forward(mel.clone());
    let f0_host = to_host_f32(f0.clone());
    let mut waves = Vec::with_capacity(batch * harmonics * frames * hop);
    for b in 0..batch {
        let draws = SourceNoise::draw(rng, harmonics, frames * hop);
        waves.extend(harmonic_waves(
            &f0_host[b * frames..(b + 1) * frames],
            hop,
            c,
            &draws,
        ));
    }
    let waves = Tensor::from_data(
        TensorData::new(waves, [batch, harmonics, frames * hop]),
        &mel.device(),
    );
    (hift.decode(mel, hift.source(waves)), f0)
}
