// The verifier judge (include/mmb/prefs.h): a response's sentences checked against the scene; the
// online judges' weights.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <set>

#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/prefs.h"
#include "mmb/sentences.h"
#include "mmb/strings.h"

namespace mmb {

int64_t ResponseJudgement::errors() const {
  return sentences == 0 ? 1 : false_sentences + unverifiable_sentences + hallucinated + repeated;
}

double ResponseJudgement::score(double error_weight) const { return score(error_weight, "strict", 1.0); }

double ResponseJudgement::score(double error_weight, const std::string& recall_kind, double false_weight) const {
  if (recall_kind != "strict" && recall_kind != "mention")
    fail("judge: recall must be 'strict' or 'mention', got '", recall_kind, "'");
  if (!(false_weight >= 0 && false_weight <= 1)) fail("judge: the false-sentence weight must be in [0, 1], got ", false_weight);
  const double e = sentences == 0 ? 1.0
                                  : double(unverifiable_sentences + hallucinated + repeated) +
                                        false_weight * double(false_sentences);
  return (recall_kind == "mention" ? mentioned : recall) - error_weight * e / double(std::max<int64_t>(1, visible));
}

Json ResponseJudgement::to_json() const {
  return {{"sentences", sentences},
          {"true", true_sentences},
          {"false", false_sentences},
          {"unverifiable", unverifiable_sentences},
          {"hallucinated", hallucinated},
          {"repeated", repeated},
          {"visible", visible},
          {"recall", recall},
          {"mention_recall", mentioned},
          {"errors", errors()}};
}

ResponseJudgement ResponseJudgement::from_json(const Json& j, const std::string& where) {
  if (!j.is_object()) fail("ResponseJudgement: ", where, ": expected an object");
  ResponseJudgement r;
  r.sentences = json_get<int64_t>(j, "sentences", where);
  r.true_sentences = json_get<int64_t>(j, "true", where);
  r.false_sentences = json_get<int64_t>(j, "false", where);
  r.unverifiable_sentences = json_get<int64_t>(j, "unverifiable", where);
  r.hallucinated = json_get<int64_t>(j, "hallucinated", where);
  r.visible = json_get<int64_t>(j, "visible", where);
  r.recall = json_get<double>(j, "recall", where);
  if (j.contains("repeated")) r.repeated = json_get<int64_t>(j, "repeated", where);  // older files: 0
  if (j.contains("mention_recall")) r.mentioned = json_get<double>(j, "mention_recall", where);  // older files: 0
  return r;
}

namespace {

// Each sentence of `text` verified against the scene (an answer sentence against `expected`).
ResponseJudgement judge_sentences(const world::Verifier& verifier, const world::Scene& scene, const std::string& text,
                                  const std::string& expected) {
  std::vector<world::Verdict> verdicts;
  for (const auto& s : split_sentences(text)) {
    try {
      verdicts.push_back(verifier.verify(scene, s, expected));
    } catch (const Error&) {
      verdicts.push_back(world::Verdict{});  // nothing to judge (punctuation only): unverifiable
    }
  }
  ResponseJudgement j;
  j.sentences = int64_t(verdicts.size());
  j.repeated = repeated_sentences(text);
  for (const auto& v : verdicts) {
    if (v.truth == world::Truth::kTrue) ++j.true_sentences;
    else if (v.truth == world::Truth::kFalse) ++j.false_sentences;
    else ++j.unverifiable_sentences;
    j.hallucinated += int64_t(__builtin_popcount(v.hallucinated));
  }
  j.recall = object_recall(scene, verdicts);
  j.mentioned = mention_recall(scene, verdicts);
  for (const auto& o : scene.objects) j.visible += o.occluded ? 0 : 1;
  return j;
}

}  // namespace

ResponseJudgement judge_response(const world::Verifier& verifier, const world::Scene& scene, const std::string& text) {
  return judge_sentences(verifier, scene, text, "");
}

ResponseJudgement judge_reasoning(const world::Verifier& verifier, const world::Scene& scene,
                                  const std::string& reference, const std::string& text) {
  const std::string expected = verifier.check_answer(reference, "yes").answer;  // the reference's own answer
  ResponseJudgement j = judge_sentences(verifier, scene, text, expected);
  j.recall = j.mentioned = 0;
  // A wrong or missing final answer is one more false sentence (beside its sentence's own verdict):
  // the answer outweighs any single step.
  if (expected.empty() || verifier.check_answer(text, expected).truth != world::Truth::kTrue) ++j.false_sentences;
  return j;
}

ResponseJudgement judge_answer(const world::Verifier& verifier, const world::Scene& scene, const std::string& reference,
                               const std::string& answer) {
  ResponseJudgement j;
  j.sentences = 1;
  for (const auto& o : scene.objects) j.visible += o.occluded ? 0 : 1;
  const std::string expected = verifier.check_answer(reference, "yes").answer;  // the reference's own answer
  const bool right = !expected.empty() && verifier.check_answer(answer, expected).truth == world::Truth::kTrue;
  (right ? j.true_sentences : j.false_sentences) = 1;
  return j;
}

ResponseJudgement judge_prompt_response(const world::Verifier& verifier, const world::Scene& scene,
                                        const DescriptionPrompt& prompt, const std::string& text) {
  if (prompt.task == "qa") return judge_answer(verifier, scene, prompt.reference, text);
  if (prompt.task == "reasoning") return judge_reasoning(verifier, scene, prompt.reference, text);
  return judge_response(verifier, scene, text);
}

int compare_judgements(const ResponseJudgement& a, const ResponseJudgement& b, double error_weight) {
  const double d = a.score(error_weight) - b.score(error_weight);
  return d > 1e-12 ? 1 : d < -1e-12 ? -1 : 0;
}

std::map<std::string, double> judge_weights(const std::string& judge, const std::string& mix) {
  static const std::set<std::string> kScores = {"verifier", "clip", "likelihood"};
  if (judge != "mix") {
    if (!kScores.count(judge)) fail("judge: unknown judge '", judge, "' (verifier | clip | likelihood | mix)");
    if (!mix.empty()) fail("judge: weights '", mix, "' are for the mix judge, not '", judge, "'");
    return {{judge, 1.0}};
  }
  if (mix.empty()) fail("judge: the mix judge needs its weights, e.g. \"verifier=1,clip=0.5\"");
  std::map<std::string, double> w;
  for (const std::string& part : split_list(mix)) {
    const size_t eq = part.find('=');
    if (eq == std::string::npos) fail("judge: mix weight '", part, "' is not name=weight");
    const std::string name = trim(part.substr(0, eq)), value = trim(part.substr(eq + 1));
    if (!kScores.count(name)) fail("judge: mix weight '", part, "': unknown score '", name, "' (verifier | clip | likelihood)");
    if (w.count(name)) fail("judge: mix weight '", name, "' given twice");
    char* end = nullptr;
    const double x = value.empty() ? -1 : std::strtod(value.c_str(), &end);
    if (value.empty() || *end != '\0' || !std::isfinite(x) || x < 0)
      fail("judge: mix weight '", part, "': the weight must be a number >= 0");
    w[name] = x;
  }
  double total = 0;
  for (const auto& [name, x] : w) total += x;
  if (total <= 0) fail("judge: mix weights '", mix, "' are all zero");
  return w;
}

}  // namespace mmb
