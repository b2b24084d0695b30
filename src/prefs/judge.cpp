// The verifier judge (include/mmb/prefs.h): a response's sentences checked against the scene.
#include "mmb/error.h"
#include "mmb/metrics.h"
#include "mmb/prefs.h"
#include "mmb/sentences.h"

namespace mmb {

int64_t ResponseJudgement::errors() const {
  return sentences == 0 ? 1 : false_sentences + unverifiable_sentences + hallucinated;
}

Json ResponseJudgement::to_json() const {
  return {{"sentences", sentences},
          {"true", true_sentences},
          {"false", false_sentences},
          {"unverifiable", unverifiable_sentences},
          {"hallucinated", hallucinated},
          {"recall", recall},
          {"errors", errors()}};
}

ResponseJudgement judge_response(const world::Verifier& verifier, const world::Scene& scene, const std::string& text) {
  std::vector<world::Verdict> verdicts;
  for (const auto& s : split_sentences(text)) {
    try {
      verdicts.push_back(verifier.verify(scene, s));
    } catch (const Error&) {
      verdicts.push_back(world::Verdict{});  // nothing to judge (punctuation only): unverifiable
    }
  }
  ResponseJudgement j;
  j.sentences = int64_t(verdicts.size());
  for (const auto& v : verdicts) {
    if (v.truth == world::Truth::kTrue) ++j.true_sentences;
    else if (v.truth == world::Truth::kFalse) ++j.false_sentences;
    else ++j.unverifiable_sentences;
    j.hallucinated += int64_t(__builtin_popcount(v.hallucinated));
  }
  j.recall = object_recall(scene, verdicts);
  return j;
}

int compare_judgements(const ResponseJudgement& a, const ResponseJudgement& b) {
  if (a.errors() != b.errors()) return a.errors() < b.errors() ? 1 : -1;
  if (a.recall != b.recall) return a.recall > b.recall ? 1 : -1;
  return 0;
}

}  // namespace mmb
