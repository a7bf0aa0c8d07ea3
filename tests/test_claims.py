"""LLM claim verification cannot be fooled: an adversarial set of fake-model replies over corpus/.

Each reply is one sentence citing a retrieved passage. False claims (a swapped name, a changed number
or date, an added negation, a true fact cited to the wrong passage, a claim wrapped in "not in corpus"
talk) must all be dropped and flagged; true claims (copies and paraphrases) must be kept with a quote
that holds them. The bar: 0 false claims kept, at least 90% of the true ones kept.
"""

from __future__ import annotations

import re

import pytest
from test_answering import ScriptedChatModel, passage_blocks

from rag.answering import NOT_IN_CORPUS
from rag.assistant import Assistant
from rag.llm import consistent

# (claim, a phrase of the passage that holds the fact); the reply cites the passage holding the phrase
TRUE = [
    ("Jin Zhuanglong chaired a meeting on developing the AI industry.", "recently chaired a meeting"),
    ("Jin Zhuanglong, the Minister of Industry and Information Technology, recently chaired a meeting on the AI "
     "industry.", "recently chaired a meeting"),
    ("Li Lecheng wrapped up a tour of AI hotspots in Shanghai and Beijing.", "tour of AI hotspots"),
    ("Li Lecheng heads China's Ministry of Industry and Information Technology.", "tour of AI hotspots"),
    ("The Beijing plan introduces 16 measures to support enterprise development.", "16 measures"),
    ("For new equipment with demonstrative value, the plan offers support of up to RMB 30 million.",
     "RMB 30 million"),
    ("Shenzhen released four action plans in March.", "Shenzhen released four"),
    ("The report on the meeting was published by the ministry on Wednesday.", "on Wednesday"),
    ("China is making a serious bet on humanoid robots.", "serious bet on humanoid"),
    ("The strategy establishes a full-lifecycle security mechanism to manage AI risks.",
     "full-lifecycle security mechanism to monitor"),
    ("The ministry would implement the AI + Manufacturing initiative in 2025.", "would implement"),
    ("In Shanghai, the focus was on building the foundational layers for AI.", "focus was squarely"),
]
FALSE = [
    # swapped names, places and days
    ("Li Lecheng chaired a meeting on developing the AI industry.", "recently chaired a meeting"),
    ("Jin Zhuanglong wrapped up a tour of AI hotspots in Shanghai and Beijing.", "tour of AI hotspots"),
    ("Xi Jinping chaired a meeting on developing the AI industry.", "recently chaired a meeting"),
    ("Li Lecheng visited Cambricon in Shanghai.", "Cambricon (Han"),
    ("Shanghai released four action plans in March.", "Shenzhen released four"),
    ("Jin Zhuanglong chaired the meeting on Monday.", "on Wednesday"),
    # changed numbers and dates
    ("The Beijing plan introduces 18 measures to support enterprise development.", "16 measures"),
    ("The plan offers support of up to RMB 50 million for new equipment.", "RMB 30 million"),
    ("Shenzhen released five action plans in March.", "Shenzhen released four"),
    ("The ministry would implement the AI + Manufacturing initiative in 2024.", "would implement"),
    ("The MIIT's AI action plan has 7 points.", "5-point AI action plan"),
    ("Shenzhen released four action plans in May.", "Shenzhen released four"),
    # added negations
    ("Jin Zhuanglong never chaired a meeting on developing the AI industry.", "recently chaired a meeting"),
    ("Li Lecheng did not tour AI hotspots in Shanghai and Beijing.", "tour of AI hotspots"),
    ("China is not making a serious bet on humanoid robots.", "serious bet on humanoid"),
    ("The plan offers no support for new equipment with demonstrative value.", "RMB 30 million"),
    ("Li Lecheng didn't wrap up a tour of AI hotspots in Shanghai and Beijing.", "tour of AI hotspots"),
    # stray "not in corpus" talk around a false claim
    ("The passages do not say, but Li Lecheng chaired the meeting on the AI industry.",
     "recently chaired a meeting"),
]
# true facts cited to a retrieved passage that does not hold them
WRONG_PASSAGE = [
    ("Jin Zhuanglong chaired a meeting on developing the AI industry.", "recently chaired a meeting"),
    ("Shenzhen released four action plans in March.", "Shenzhen released four"),
    ("The Beijing plan introduces 16 measures to support enterprise development.", "16 measures"),
]


@pytest.fixture(scope="module")
def assistant(corpus_index, settings) -> Assistant:
    return Assistant.load(corpus_index[0], settings)


def cite(claim: str, phrase: str, holding: bool):
    """A reply: the claim, citing the first retrieved passage that holds (or, if not `holding`, lacks) the phrase."""
    def reply(messages) -> str:
        blocks = passage_blocks(messages[1].content)
        ns = [n for n, text in blocks.items() if (phrase.replace("’", "'") in text.replace("’", "'")) == holding]
        assert ns, f"precondition: a retrieved passage {'holds' if holding else 'lacks'} {phrase!r}"
        return f"{claim} [{ns[0]}]"
    return reply


def answer(assistant, claim, phrase, holding=True):
    return Assistant(assistant.store, assistant.settings, llm=ScriptedChatModel(reply=cite(claim, phrase, holding))
                     ).answer(claim.rstrip(".") + "?")


def test_no_false_claim_is_kept_and_nine_in_ten_true_ones_are(assistant):
    kept_false, kept_true = [], []
    for claim, phrase in FALSE:
        ans = answer(assistant, claim, phrase)
        if not ans.abstained:
            kept_false.append((claim, ans.text, [c.quote for c in ans.citations]))
        else:
            assert ans.flagged and ans.text == NOT_IN_CORPUS
    for claim, phrase in WRONG_PASSAGE:
        ans = answer(assistant, claim, phrase, holding=False)
        if not ans.abstained:
            kept_false.append((claim, ans.text, [c.quote for c in ans.citations]))
    for claim, phrase in TRUE:
        ans = answer(assistant, claim, phrase)
        if not ans.abstained:
            kept_true.append(claim)
            (c,) = ans.citations
            assert phrase.replace("’", "'") in c.quote.replace("’", "'") or consistent(claim, c.quote)
            assert ans.text == f"{claim[:-1]}. [1]" or ans.text.startswith(claim.rstrip("."))
    assert len(FALSE) + len(WRONG_PASSAGE) + len(TRUE) >= 30
    assert kept_false == []
    assert len(kept_true) / len(TRUE) >= 0.9, sorted(set(c for c, _ in TRUE) - set(kept_true))


def test_a_true_sentence_survives_a_stray_not_in_corpus_beside_it(assistant):
    claim, phrase = TRUE[0]

    def reply(messages):
        return cite(claim, phrase, True)(messages) + " NOT_IN_CORPUS"

    ans = Assistant(assistant.store, assistant.settings, llm=ScriptedChatModel(reply=reply)).answer(
        "Who chaired the meeting on developing the AI industry?")
    assert not ans.abstained and ans.text.startswith("Jin Zhuanglong chaired")
    assert "NOT_IN_CORPUS" not in ans.text


@pytest.mark.parametrize("claim, quote, ok", [
    ("Jin chaired it.", "Jin Zhuanglong chaired the meeting.", True),
    ("Jin never chaired it.", "Jin Zhuanglong chaired the meeting.", False),
    ("Jin chaired it.", "Jin Zhuanglong did not chair the meeting.", False),
    ("The plan has five parts.", "The plan has 5 parts.", True),
    ("The plan has six parts.", "The plan has 5 parts.", False),
    ("It cost 1,200 yuan.", "It cost 1200 yuan.", True),
    ("Furthermore, the plan covers robots.", "The plan covers robots and chips.", True),
    ("Not only chips but robots matter.", "Not only chips but also robots matter.", True),
])
def test_the_consistency_rule_on_its_own(claim, quote, ok):
    assert consistent(claim, quote) is ok


def test_streamed_llm_answer_shows_only_verified_sentences(assistant):
    true_claim, phrase = TRUE[2]
    false_claim = FALSE[1][0]

    def reply(messages):
        n = re.search(r"\[(\d+)\]", cite(true_claim, phrase, True)(messages)).group(1)
        return f"{true_claim} [{n}] {false_claim} [{n}]"

    llm_assistant = Assistant(assistant.store, assistant.settings, llm=ScriptedChatModel(reply=reply))
    steps = list(llm_assistant.stream_answer("Which minister toured AI hotspots in Shanghai and Beijing?"))
    final = steps[-1][0]
    assert "".join(p for _, p in steps) == final.text
    assert final.text == f"{true_claim[:-1]}. [1]" or final.text.startswith("Li Lecheng wrapped up")
    assert "Jin Zhuanglong" not in final.text and final.flagged == [false_claim]

