"""The Simplified Chinese catalogue is complete and compiled, and the steward's pages (review queue,
compare-and-merge, survivorship rules, the 360° customer page) render in Chinese by default."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import translation

from dedup.choices import MATCH_COMPARISON_LABELS, MATCH_LEVEL_LABELS
from dedup.comparators import COMPARISONS
from dedup.models import MatchCandidate
from tests.dedup.conftest import add_person, make_source

PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


def _entries() -> list[dict]:
    """The catalogue's live entries (obsolete ones and the header left out)."""
    out = []
    for block in PO.read_text(encoding="utf-8").split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#~")]
        parts: dict[str, str] = {}
        key = None
        for line in lines:
            m = re.match(r'^(msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?) (".*")$', line)
            if m:
                key = m.group(1)
                parts[key] = ast.literal_eval(m.group(2))
            elif line.startswith('"') and key:
                parts[key] += ast.literal_eval(line)
        if parts.get("msgid"):
            out.append({"fuzzy": any(line.startswith("#,") and "fuzzy" in line for line in lines), **parts})
    return out


def test_the_catalogue_has_no_untranslated_or_fuzzy_entry():
    entries = _entries()
    assert len(entries) > 1000
    assert [e["msgid"] for e in entries if e["fuzzy"]] == []
    assert [e["msgid"] for e in entries if not (e.get("msgstr") or e.get("msgstr[0]"))] == []


def test_the_compiled_catalogue_matches_the_po_file():
    # A stale django.mo would show English (or old wording) though the .po is translated.
    with translation.override("zh-hans"):
        for e in _entries():
            if "msgctxt" in e:
                assert translation.pgettext(e["msgctxt"], e["msgid"]) == e["msgstr"], e["msgid"]
            elif "msgid_plural" in e:
                assert translation.ngettext(e["msgid"], e["msgid_plural"], 1) == e["msgstr[0]"], e["msgid"]
            else:
                assert translation.gettext(e["msgid"]) == e["msgstr"], e["msgid"]


def test_every_matcher_comparison_and_level_has_a_label():
    levels = {level for c in COMPARISONS.values() for level in c.levels} | {"missing"}
    assert set(MATCH_COMPARISON_LABELS) == set(COMPARISONS)
    assert set(MATCH_LEVEL_LABELS) == levels
    with translation.override("zh-hans"):
        assert str(MATCH_LEVEL_LABELS["sound_alike"]) == "读音相似"
    with translation.override("en"):
        assert str(MATCH_LEVEL_LABELS["sound_alike"]) == "sound_alike"  # English shows the code, as before


@pytest.mark.django_db
@override_settings(LANGUAGE_CODE="zh-hans")
def test_the_review_pages_render_in_chinese(steward, admin_user):
    crm = make_source("crm")
    a = add_person(crm, "A", full_name="张伟", mobile="+8613800000001")
    b = add_person(crm, "B", full_name="章伟", mobile="+8613800000001")
    explanation = [{"comparison": "name", "fields": ["full_name"], "level": "sound_alike", "weight": 2.1}]
    pair = MatchCandidate.objects.create(left=a, right=b, score=0.93, rule="default", explanation=explanation)
    client = Client()
    client.force_login(steward)

    queue = client.get("/dedup/review/").content.decode()
    assert "审核队列" in queue and "键盘快捷键" in queue and "分配给我" in queue
    assert "Keyboard shortcuts" not in queue and "Assign to me" not in queue

    compare = client.get(f"/dedup/candidates/{pair.pk}/compare/").content.decode()
    assert "比对两条记录" in compare and "保留客户" in compare and "建议依据" in compare and "读音相似" in compare
    assert "Compare two records" not in compare and "Proposed, because" not in compare

    customer = client.get(a.get_absolute_url()).content.decode()
    assert "黄金记录" in customer and "合并与取消合并" in customer and "此客户从未被合并过。" in customer
    assert "Merges and unmerges" not in customer and "Full change history" not in customer

    client.force_login(admin_user)
    rules = client.get("/dedup/survivorship/").content.decode()
    assert "存活规则" in rules and "数据源可信顺序" in rules and "人工选定值" in rules
    assert "Survivorship rules" not in rules and "Tie-break" not in rules
