"""Ship a sound default match rule (see docs/matching.md)."""
from django.db import migrations

DEFAULT_RULE = {
    "name": "default",
    "description": (
        "People: blocking on mobile, family name + birth year, given name + birthday, postcode + initials, "
        "email local part, sound-alike name + city and identity keys; Fellegi-Sunter weights learnt from the data."
    ),
    "is_active": True,
    "is_default": True,
    "blocking_keys": [
        "mobile8", "family_birth_year", "given_birth_md", "postcode_initial", "email_local", "name_city",
        "id_number", "wechat_unionid", "member_no",
    ],
    "comparisons": {
        "name": {"high": 0.92, "low": 0.80},
        "birth_date": {},
        "mobile": {},
        "id_number": {},
        "email": {},
        "gender": {},
        "location": {"high": 0.90},
        "wechat_unionid": {},
        "member_no": {},
    },
    "auto_threshold": 0.9999,
    "review_threshold": 0.80,
    "max_block_size": 10,
    "max_cluster_size": 20,
    "learn_parameters": True,
}


def create(apps, schema_editor):
    MatchRule = apps.get_model("dedup", "MatchRule")
    if not MatchRule.objects.filter(name=DEFAULT_RULE["name"]).exists():
        MatchRule.objects.create(**DEFAULT_RULE)


def remove(apps, schema_editor):
    apps.get_model("dedup", "MatchRule").objects.filter(name=DEFAULT_RULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [("dedup", "0002_rules_runs_merges")]
    operations = [migrations.RunPython(create, remove)]
