// run_fp8_layer_tail: the ops an FP8 decode row's layer tail is made of (kernels/ops.hpp), in the model's order.

#include "kernels/ops.hpp"

namespace troupe {

void run_fp8_layer_tail(ops& backend, const fp8_layer_tail_args& a) {
  backend.linear_fp8(a.attn, *a.o_proj, a.o_bias, a.hidden);
  backend.add_rms_norm(a.hidden, a.residual, a.post_norm, a.eps);
  if (!backend.linear_fp8_silu(a.hidden, *a.gate_up, tensor{}, a.act)) {
    backend.linear_fp8(a.hidden, *a.gate_up, tensor{}, a.mlp);
    backend.silu_and_mul(a.mlp, a.act);
  }
  backend.linear_fp8(a.act, *a.down, tensor{}, a.hidden);
  backend.add_rms_norm(a.hidden, a.residual, a.next_norm, a.eps);
  if (!a.next_qkv) return;
  backend.linear_fp8(a.hidden, *a.next_qkv, a.next_qkv_bias, a.qkv);
  if (!a.rope.positions.empty())
    backend.rope_write_kv(a.qkv, a.rope.positions, a.rope.cos_sin, a.rope.slot_mapping, a.rope.k_cache, a.rope.v_cache,
                          a.rope.shape);
}

} // namespace troupe
