// Sentence splitter: hand cases (decimals, abbreviations, lists, quotes, newlines, trailing
// text, empty input), spans that map back to the text, and the generation stop test.
#include "mmb/sentences.h"

#include <gtest/gtest.h>

namespace mmb {
namespace {

using Strings = std::vector<std::string>;

TEST(Sentences, Basic) {
  EXPECT_EQ(split_sentences("The cube is red. The sphere is blue! Is it big? No."),
            (Strings{"The cube is red.", "The sphere is blue!", "Is it big?", "No."}));
}

TEST(Sentences, EmptyAndBlank) {
  EXPECT_TRUE(split_sentences("").empty());
  EXPECT_TRUE(split_sentences("   \n\t ").empty());
  EXPECT_FALSE(ends_sentence(""));
  EXPECT_FALSE(ends_sentence("  "));
}

TEST(Sentences, DecimalsAndNumbers) {
  EXPECT_EQ(split_sentences("It is 3.5 units wide. The cone costs 0.25 dollars."),
            (Strings{"It is 3.5 units wide.", "The cone costs 0.25 dollars."}));
  EXPECT_EQ(split_sentences("There are 3. The cube is red."),
            (Strings{"There are 3.", "The cube is red."}));
}

TEST(Sentences, Abbreviations) {
  EXPECT_EQ(split_sentences("Some shapes, e.g. cubes, are red. Others, i.e. spheres, are not."),
            (Strings{"Some shapes, e.g. cubes, are red.", "Others, i.e. spheres, are not."}));
  EXPECT_EQ(split_sentences("Dr. Smith saw it vs. the cone. Mr. Lee agreed."),
            (Strings{"Dr. Smith saw it vs. the cone.", "Mr. Lee agreed."}));
  EXPECT_EQ(split_sentences("Cubes, cones, etc. are shapes. I saw cubes, cones, etc. Then more."),
            (Strings{"Cubes, cones, etc. are shapes.", "I saw cubes, cones, etc.", "Then more."}));
  EXPECT_EQ(split_sentences("It is 5 p.m. now. It was in the U.S. Then it left."),
            (Strings{"It is 5 p.m. now.", "It was in the U.S.", "Then it left."}));
}

TEST(Sentences, ListNumbersAndNewlines) {
  EXPECT_EQ(split_sentences("1. The red cube\n2. The blue sphere."),
            (Strings{"1. The red cube", "2. The blue sphere."}));
  EXPECT_EQ(split_sentences("Objects:\n\n- cube\n- sphere"),
            (Strings{"Objects:", "- cube", "- sphere"}));
  SentenceSplitOptions no_newline;
  no_newline.split_on_newline = false;
  EXPECT_EQ(split_sentences("one\ntwo. three", no_newline), (Strings{"one\ntwo.", "three"}));
}

TEST(Sentences, QuotesAndRuns) {
  EXPECT_EQ(split_sentences("He said \"Stop.\" Then he left... Really?! Yes (mostly.) Done"),
            (Strings{"He said \"Stop.\"", "Then he left...", "Really?!", "Yes (mostly.)", "Done"}));
  EXPECT_EQ(split_sentences("It said \xE2\x80\x9Cred.\xE2\x80\x9D Next one."),
            (Strings{"It said \xE2\x80\x9Cred.\xE2\x80\x9D", "Next one."}));
}

TEST(Sentences, TrailingTextWithoutTerminator) {
  auto spans = sentence_spans("The cube is red. The sphere is  ");
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_TRUE(spans[0].terminated);
  EXPECT_FALSE(spans[1].terminated);
  EXPECT_EQ(split_sentences("The cube is red. The sphere is  "),
            (Strings{"The cube is red.", "The sphere is"}));
}

TEST(Sentences, SpansMapBackToText) {
  const std::string text =
      "  Unicode: caf\xC3\xA9 is 2.5 km away.   The \xE6\xBC\xA2 sign!\n\nLast one e.g. here ";
  auto spans = sentence_spans(text);
  auto strings = split_sentences(text);
  ASSERT_EQ(spans.size(), 3u);
  ASSERT_EQ(strings.size(), 3u);
  size_t prev_end = 0;
  for (size_t k = 0; k < spans.size(); ++k) {
    EXPECT_LE(prev_end, spans[k].begin);
    EXPECT_LT(spans[k].begin, spans[k].end);
    EXPECT_LE(spans[k].end, text.size());
    EXPECT_EQ(text.substr(spans[k].begin, spans[k].end - spans[k].begin), strings[k]);
    // Only whitespace between consecutive spans.
    for (size_t b = prev_end; b < spans[k].begin; ++b) EXPECT_TRUE(isspace(text[b])) << b;
    prev_end = spans[k].end;
  }
  EXPECT_EQ(strings[0], "Unicode: caf\xC3\xA9 is 2.5 km away.");
  EXPECT_EQ(strings[1], "The \xE6\xBC\xA2 sign!");
  EXPECT_EQ(strings[2], "Last one e.g. here");
  EXPECT_EQ(spans[0].begin, 2u);
}

TEST(Sentences, EndsSentence) {
  EXPECT_TRUE(ends_sentence("The cube is red."));
  EXPECT_TRUE(ends_sentence("The cube is red. "));
  EXPECT_TRUE(ends_sentence("Is it? Yes!"));
  EXPECT_TRUE(ends_sentence("It said \"red.\""));
  EXPECT_TRUE(ends_sentence("A list item\n"));
  EXPECT_TRUE(ends_sentence("There are 3."));  // documented: cannot see a following digit
  EXPECT_FALSE(ends_sentence("The cube is red. The sph"));
  EXPECT_FALSE(ends_sentence("It is 3.5"));
  EXPECT_FALSE(ends_sentence("Some shapes, e.g."));
  EXPECT_FALSE(ends_sentence("1."));
  EXPECT_FALSE(ends_sentence("The cube is red"));
  SentenceSplitOptions no_newline;
  no_newline.split_on_newline = false;
  EXPECT_FALSE(ends_sentence("A list item\n", no_newline));
}

}  // namespace
}  // namespace mmb
