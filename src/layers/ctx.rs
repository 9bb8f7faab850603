//! What the net lends a layer for one call: its bottoms, tops and parameters, borrowed out of
//! the net's blob arenas by index. Layers that may run in place use [`Ctx::unary`] and
//! [`Ctx::unary_back`], which hand out bottom 0 and top 0 as an [`Io`] whether or not they are
//! the same blob; all other layers use [`Ctx::parts`] and [`Ctx::parts_back`], which the net
//! only calls on layers whose bottoms and tops are distinct.

use crate::backend::{Io, Storage};
use crate::blob::Blob;
use crate::proto::Phase;
use crate::{Error, Result};

/// A layer's view of the net for one call.
pub struct Ctx<'a, B: Storage> {
    blobs: &'a mut [Blob<B>],
    params: &'a mut [Blob<B>],
    bottom_ids: &'a [usize],
    top_ids: &'a [usize],
    param_ids: &'a [usize],
    param_propagate: &'a [bool],
    top_diff_values: &'a [Option<f32>],
    /// The phase the net runs in.
    pub phase: Phase,
}

/// Forward view of a layer whose bottoms and tops are distinct.
pub struct Parts<'a, B: Storage> {
    /// Bottom blobs, read-only.
    pub bottoms: Vec<&'a Blob<B>>,
    /// Top blobs, written.
    pub tops: Vec<&'a mut Blob<B>>,
    /// Learnable blobs.
    pub params: Vec<&'a mut Blob<B>>,
}

/// Backward view of a layer whose bottoms and tops are distinct.
pub struct PartsBack<'a, B: Storage> {
    /// Bottom blobs: their diffs are written.
    pub bottoms: Vec<&'a mut Blob<B>>,
    /// Top blobs: their diffs are read.
    pub tops: Vec<&'a Blob<B>>,
    /// Learnable blobs: their diffs are accumulated.
    pub params: Vec<&'a mut Blob<B>>,
}

/// Forward view of a layer that may run in place on bottom 0 / top 0.
pub struct Unary<'a, B: Storage> {
    /// Bottom 0's data to top 0's data.
    pub data: Io<'a, B::Buf>,
    /// Shape of bottom 0 (and top 0).
    pub shape: Vec<usize>,
    /// Bottoms after the first, read-only.
    pub other_bottoms: Vec<&'a Blob<B>>,
    /// Learnable blobs.
    pub params: Vec<&'a mut Blob<B>>,
}

/// Backward view of a layer that may run in place on bottom 0 / top 0.
pub struct UnaryBack<'a, B: Storage> {
    /// Bottom 0's data (top 0's data when in place: the overwritten values, as in Caffe).
    pub x: &'a B::Buf,
    /// Top 0's data.
    pub y: &'a B::Buf,
    /// Top 0's diff to bottom 0's diff.
    pub diff: Io<'a, B::Buf>,
    /// Shape of bottom 0.
    pub shape: Vec<usize>,
    /// Whether bottom 0 and top 0 are one blob.
    pub in_place: bool,
    /// Bottoms after the first: their diffs may be written.
    pub other_bottoms: Vec<&'a mut Blob<B>>,
    /// Learnable blobs.
    pub params: Vec<&'a mut Blob<B>>,
}

/// Role of a blob index in one call.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Bottom(usize),
    Top(usize),
}

impl<'a, B: Storage> Ctx<'a, B> {
    /// A view of `blobs` and `params` for the layer with these blob indices.
    pub fn new(
        blobs: &'a mut [Blob<B>],
        params: &'a mut [Blob<B>],
        bottom_ids: &'a [usize],
        top_ids: &'a [usize],
        param_ids: &'a [usize],
        param_propagate: &'a [bool],
        phase: Phase,
    ) -> Self {
        Ctx { blobs, params, bottom_ids, top_ids, param_ids, param_propagate, top_diff_values: &[], phase }
    }

    /// Tells the layer what the tops' diffs hold where only the net wrote them (a loss top's
    /// weight; the net keeps these per blob).
    pub fn with_top_diff_values(mut self, values: &'a [Option<f32>]) -> Self {
        self.top_diff_values = values;
        self
    }

    /// The value every element of top `i`'s diff holds, where the net knows it without reading
    /// it (a loss top's weight).
    pub fn top_diff_value(&self, i: usize) -> Option<f32> {
        self.top_diff_values.get(i).copied().flatten()
    }

    /// Whether backward should compute the gradient of learnable blob `i` (false when its
    /// `lr_mult` is 0, as in Caffe).
    pub fn param_propagate(&self, i: usize) -> bool {
        self.param_propagate.get(i).copied().unwrap_or(false)
    }

    /// Number of bottoms.
    pub fn num_bottoms(&self) -> usize {
        self.bottom_ids.len()
    }

    /// Number of tops.
    pub fn num_tops(&self) -> usize {
        self.top_ids.len()
    }

    /// Bottom `i`, read-only.
    pub fn bottom(&self, i: usize) -> &Blob<B> {
        &self.blobs[self.bottom_ids[i]]
    }

    /// Top `i`, read-only.
    pub fn top(&self, i: usize) -> &Blob<B> {
        &self.blobs[self.top_ids[i]]
    }

    /// Top `i`, writable (for layers with no bottoms, such as data layers).
    pub fn top_mut(&mut self, i: usize) -> &mut Blob<B> {
        &mut self.blobs[self.top_ids[i]]
    }

    /// Learnable blob `i`, writable.
    pub fn param_mut(&mut self, i: usize) -> &mut Blob<B> {
        &mut self.params[self.param_ids[i]]
    }

    fn roles(&self) -> Result<Vec<(usize, Role)>> {
        let mut roles: Vec<(usize, Role)> = self
            .bottom_ids
            .iter()
            .enumerate()
            .map(|(i, &b)| (b, Role::Bottom(i)))
            .chain(self.top_ids.iter().enumerate().map(|(i, &t)| (t, Role::Top(i))))
            .collect();
        roles.sort_by_key(|r| r.0);
        if roles.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(Error::Internal("a layer's bottoms and tops are not distinct blobs".into()));
        }
        Ok(roles)
    }

    fn take_params<'b>(params: &'b mut [Blob<B>], ids: &[usize]) -> Result<Vec<&'b mut Blob<B>>> {
        let mut slots: Vec<Option<&'b mut Blob<B>>> = (0..ids.len()).map(|_| None).collect();
        for (idx, blob) in params.iter_mut().enumerate() {
            let mut uses = ids.iter().enumerate().filter(|&(_, &p)| p == idx);
            if let Some((pos, _)) = uses.next() {
                if uses.next().is_some() {
                    return Err(Error::Internal("a layer uses one parameter blob twice".into()));
                }
                slots[pos] = Some(blob);
            }
        }
        slots.into_iter().map(|s| s.ok_or_else(|| Error::Internal("parameter index out of range".into()))).collect()
    }

    /// Splits the arenas into this layer's blobs: bottoms read-only, tops writable.
    pub fn parts(&mut self) -> Result<Parts<'_, B>> {
        let roles = self.roles()?;
        let mut bottoms: Vec<Option<&Blob<B>>> = vec![None; self.bottom_ids.len()];
        let mut tops: Vec<Option<&mut Blob<B>>> = (0..self.top_ids.len()).map(|_| None).collect();
        let mut next = roles.iter().peekable();
        for (idx, blob) in self.blobs.iter_mut().enumerate() {
            if let Some(&&(id, role)) = next.peek()
                && id == idx
            {
                next.next();
                match role {
                    Role::Bottom(i) => bottoms[i] = Some(&*blob),
                    Role::Top(i) => tops[i] = Some(blob),
                }
            }
        }
        Ok(Parts {
            bottoms: bottoms.into_iter().map(|b| b.ok_or_else(missing)).collect::<Result<_>>()?,
            tops: tops.into_iter().map(|t| t.ok_or_else(missing)).collect::<Result<_>>()?,
            params: Self::take_params(&mut *self.params, self.param_ids)?,
        })
    }

    /// Splits the arenas for backward: bottoms writable (diffs), tops read-only.
    pub fn parts_back(&mut self) -> Result<PartsBack<'_, B>> {
        let roles = self.roles()?;
        let mut bottoms: Vec<Option<&mut Blob<B>>> = (0..self.bottom_ids.len()).map(|_| None).collect();
        let mut tops: Vec<Option<&Blob<B>>> = vec![None; self.top_ids.len()];
        let mut next = roles.iter().peekable();
        for (idx, blob) in self.blobs.iter_mut().enumerate() {
            if let Some(&&(id, role)) = next.peek()
                && id == idx
            {
                next.next();
                match role {
                    Role::Bottom(i) => bottoms[i] = Some(blob),
                    Role::Top(i) => tops[i] = Some(&*blob),
                }
            }
        }
        Ok(PartsBack {
            bottoms: bottoms.into_iter().map(|b| b.ok_or_else(missing)).collect::<Result<_>>()?,
            tops: tops.into_iter().map(|t| t.ok_or_else(missing)).collect::<Result<_>>()?,
            params: Self::take_params(&mut *self.params, self.param_ids)?,
        })
    }

    /// Whether top 0 is bottom 0.
    pub fn in_place(&self) -> bool {
        !self.bottom_ids.is_empty() && !self.top_ids.is_empty() && self.bottom_ids[0] == self.top_ids[0]
    }

    /// Checks that the blobs beside bottom 0 and top 0 are distinct from them and from each
    /// other, as the unary views need.
    fn check_unary(&self) -> Result<()> {
        let (b0, t0) = (self.bottom_ids[0], self.top_ids[0]);
        let mut extra: Vec<usize> = self.bottom_ids[1..].iter().chain(&self.top_ids[1..]).copied().collect();
        let aliased = extra.contains(&t0) || extra.contains(&b0);
        extra.sort_unstable();
        if aliased || extra.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Internal("unary view of a layer with aliased extra blobs".into()));
        }
        Ok(())
    }

    /// The forward view of a layer on bottom 0 -> top 0, in place or not. Tops after the first
    /// are not in the view: write them after it ends, through [`Ctx::top_mut`].
    pub fn unary(&mut self) -> Result<Unary<'_, B>> {
        self.check_unary()?;
        let (b0, t0) = (self.bottom_ids[0], self.top_ids[0]);
        let others = &self.bottom_ids[1..];
        let mut x: Option<&Blob<B>> = None;
        let mut y: Option<&mut Blob<B>> = None;
        let mut other: Vec<Option<&Blob<B>>> = vec![None; others.len()];
        for (idx, blob) in self.blobs.iter_mut().enumerate() {
            if idx == t0 {
                y = Some(blob);
            } else if idx == b0 {
                x = Some(&*blob);
            } else if let Some(p) = others.iter().position(|&o| o == idx) {
                other[p] = Some(&*blob);
            }
        }
        let y = y.ok_or_else(missing)?;
        let shape = match x {
            Some(x) => x.shape().to_vec(),
            None => y.shape().to_vec(),
        };
        let data = match x {
            Some(x) => Io::Pair(&x.data, &mut y.data),
            None => Io::InPlace(&mut y.data),
        };
        Ok(Unary {
            data,
            shape,
            other_bottoms: other.into_iter().map(|b| b.ok_or_else(missing)).collect::<Result<_>>()?,
            params: Self::take_params(&mut *self.params, self.param_ids)?,
        })
    }

    /// The backward view of a layer on bottom 0 -> top 0, in place or not (the diffs of tops
    /// after the first are not in the view).
    pub fn unary_back(&mut self) -> Result<UnaryBack<'_, B>> {
        self.check_unary()?;
        let (b0, t0) = (self.bottom_ids[0], self.top_ids[0]);
        let others = &self.bottom_ids[1..];
        let mut x: Option<&mut Blob<B>> = None;
        let mut y: Option<&mut Blob<B>> = None;
        let mut other: Vec<Option<&mut Blob<B>>> = (0..others.len()).map(|_| None).collect();
        for (idx, blob) in self.blobs.iter_mut().enumerate() {
            if idx == t0 {
                y = Some(blob);
            } else if idx == b0 {
                x = Some(blob);
            } else if let Some(p) = others.iter().position(|&o| o == idx) {
                other[p] = Some(blob);
            }
        }
        let y = y.ok_or_else(missing)?;
        let in_place = x.is_none();
        let (xd, yd, diff, shape) = match x {
            Some(x) => {
                let shape = x.shape().to_vec();
                let Blob { data: xd, diff: dx, .. } = x;
                let Blob { data: yd, diff: dy, .. } = y;
                (&*xd, &*yd, Io::Pair(&*dy, dx), shape)
            }
            None => {
                let shape = y.shape().to_vec();
                let Blob { data, diff, .. } = y;
                (&*data, &*data, Io::InPlace(diff), shape)
            }
        };
        Ok(UnaryBack {
            x: xd,
            y: yd,
            diff,
            shape,
            in_place,
            other_bottoms: other.into_iter().map(|b| b.ok_or_else(missing)).collect::<Result<_>>()?,
            params: Self::take_params(&mut *self.params, self.param_ids)?,
        })
    }
}

fn missing() -> Error {
    Error::Internal("blob index out of range".into())
}
