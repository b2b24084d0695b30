// The DPO family of losses (include/mmb/dpo.h). Forms as TRL's DPOTrainer; IPO is offered in
// TRL's length-normalised form ("ipo") and the paper's summed form ("ipo_sum").
#include "mmb/dpo.h"

#include "mmb/error.h"

namespace mmb {

void check_dpo_options(const DpoLossOptions& o) {
  const std::string& l = o.loss;
  if (l != "sigmoid" && l != "robust" && l != "hinge" && l != "ipo" && l != "ipo_sum")
    fail("dpo_loss: unknown loss '", l, "' (sigmoid, robust, hinge, ipo, ipo_sum)");
  if (!(o.beta > 0)) fail("dpo_loss: beta must be > 0, got ", o.beta);
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 0.5))
    fail("dpo_loss: label_smoothing must be in [0, 0.5), got ", o.label_smoothing);
  if (o.rpo_alpha < 0 || o.anchor < 0 || o.image_weight < 0)
    fail("dpo_loss: rpo_alpha, anchor and image_weight must be >= 0");
}

DpoLossTerms dpo_loss(const DpoInputs& in, const DpoLossOptions& o) {
  check_dpo_options(o);
  const int64_t B = in.policy_chosen.numel();
  for (const torch::Tensor* t : {&in.policy_rejected, &in.ref_chosen, &in.ref_rejected})
    if (!t->defined() || t->numel() != B) fail("dpo_loss: every log-prob tensor must have ", B, " entries");
  namespace F = torch::nn::functional;
  const double beta = o.beta, eps = o.label_smoothing;
  auto pc = in.policy_chosen, pr = in.policy_rejected, rc = in.ref_chosen.detach(), rr = in.ref_rejected.detach();
  const bool needs_tokens = o.loss == "ipo" || o.rpo_alpha > 0;
  if (needs_tokens && (!in.chosen_tokens.defined() || !in.rejected_tokens.defined()))
    fail("dpo_loss: ", o.loss, " needs the response token counts");
  if (o.loss == "ipo") {  // every log-prob per token
    pc = pc / in.chosen_tokens;
    rc = rc / in.chosen_tokens;
    pr = pr / in.rejected_tokens;
    rr = rr / in.rejected_tokens;
  }
  auto h = (pc - pr) - (rc - rr);  // (B,)
  torch::Tensor loss;
  if (o.loss == "sigmoid") {
    loss = -(1 - eps) * F::logsigmoid(beta * h) - eps * F::logsigmoid(-beta * h);
  } else if (o.loss == "robust") {
    loss = (-(1 - eps) * F::logsigmoid(beta * h) + eps * F::logsigmoid(-beta * h)) / (1 - 2 * eps);
  } else if (o.loss == "hinge") {
    loss = torch::relu(1 - beta * h);
  } else {  // ipo, ipo_sum
    loss = (h - 1 / (2 * beta)).pow(2);
  }
  const auto chosen_logratio = in.policy_chosen - in.ref_chosen.detach();  // (B,) summed form
  if (o.rpo_alpha > 0) loss = loss + o.rpo_alpha * (-in.policy_chosen / in.chosen_tokens);
  if (o.anchor > 0) loss = loss + o.anchor * -F::logsigmoid(beta * chosen_logratio);
  if (o.image_weight > 0) {
    if (!in.policy_chosen_corrupt.defined() || !in.ref_chosen_corrupt.defined())
      fail("dpo_loss: image_weight > 0 needs the chosen log-probs on the corrupted image");
    const auto corrupt_logratio = in.policy_chosen_corrupt - in.ref_chosen_corrupt.detach();
    loss = loss + o.image_weight * -F::logsigmoid(beta * (chosen_logratio - corrupt_logratio));
  }
  DpoLossTerms out;
  out.loss = loss;
  out.chosen_rewards = (beta * chosen_logratio).detach();
  out.rejected_rewards = (beta * (in.policy_rejected - in.ref_rejected)).detach();
  return out;
}

}  // namespace mmb
