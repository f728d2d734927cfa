"""The core fields of the data dictionary, as crmhub ships them.

Each core field is a column of ``Customer``. Loaded by a data migration and kept in sync
by ``field_definitions_sync``; admins may change labels, sensitivity and masks afterwards
and add custom fields of their own.
"""
from __future__ import annotations

from crmhub.choices import FieldType as T
from crmhub.choices import MaskStyle as M
from crmhub.choices import Sensitivity as S

# name, English label, Chinese label, type, sensitivity, mask style, identity key, header synonyms
CORE_FIELDS: list[tuple[str, str, str, str, str, str, bool, list[str]]] = [
    ("full_name", "Full name", "姓名", T.NAME, S.CONFIDENTIAL, M.NAME, False,
     ["姓名", "客户姓名", "客户名称", "名字", "联系人", "会员姓名", "name", "full name", "customer name", "contact"]),
    ("family_name", "Family name", "姓", T.NAME, S.CONFIDENTIAL, M.PARTIAL, False,
     ["姓", "姓氏", "surname", "last name", "family name"]),
    ("given_name", "Given name", "名", T.NAME, S.CONFIDENTIAL, M.PARTIAL, False,
     ["名", "first name", "given name", "forename"]),
    ("gender", "Gender", "性别", T.GENDER, S.INTERNAL, M.NONE, False, ["性别", "gender", "sex"]),
    ("birth_date", "Birth date", "出生日期", T.DATE, S.CONFIDENTIAL, M.FULL, False,
     ["出生日期", "生日", "出生年月", "birthday", "birth date", "date of birth", "dob"]),
    ("mobile", "Mobile", "手机号", T.MOBILE, S.CONFIDENTIAL, M.MOBILE, True,
     ["手机", "手机号", "手机号码", "移动电话", "联系电话", "联系方式", "mobile", "mobile phone", "cell", "cellphone",
      "tel"]),
    ("phone", "Phone", "固定电话", T.PHONE, S.CONFIDENTIAL, M.MOBILE, False,
     ["固话", "座机", "固定电话", "电话号码", "办公电话", "phone", "landline", "telephone", "work phone"]),
    ("email", "Email", "电子邮箱", T.EMAIL, S.CONFIDENTIAL, M.EMAIL, True,
     ["邮箱", "电子邮箱", "电子邮件", "email", "e-mail", "mail", "email address"]),
    ("id_number", "ID number", "证件号码", T.ID_NUMBER, S.SECRET, M.ID_NUMBER, True,
     ["身份证", "身份证号", "身份证号码", "证件号", "证件号码", "护照号", "id number", "id no", "national id",
      "passport"]),
    ("member_no", "Member number", "会员号", T.CODE, S.INTERNAL, M.NONE, True,
     ["会员号", "会员编号", "会员卡号", "卡号", "member no", "member number", "membership no", "loyalty id"]),
    ("wechat_openid", "WeChat openid", "微信OpenID", T.CODE, S.CONFIDENTIAL, M.PARTIAL, False,
     ["openid", "微信openid", "wechat openid"]),
    ("wechat_unionid", "WeChat unionid", "微信UnionID", T.CODE, S.CONFIDENTIAL, M.PARTIAL, True,
     ["unionid", "微信unionid", "wechat unionid"]),
    ("company", "Company", "公司", T.TEXT, S.PUBLIC, M.NONE, False,
     ["公司", "公司名称", "单位", "工作单位", "企业", "company", "company name", "employer", "organization"]),
    ("job_title", "Job title", "职位", T.TEXT, S.PUBLIC, M.NONE, False,
     ["职位", "职务", "岗位", "job title", "title", "position"]),
    ("province", "Province", "省份", T.TEXT, S.INTERNAL, M.NONE, False, ["省", "省份", "province", "state"]),
    ("city", "City", "城市", T.TEXT, S.INTERNAL, M.NONE, False, ["市", "城市", "city"]),
    ("district", "District", "区县", T.TEXT, S.INTERNAL, M.NONE, False, ["区", "区县", "县区", "district", "county"]),
    ("address", "Address", "地址", T.ADDRESS, S.CONFIDENTIAL, M.ADDRESS, False,
     ["地址", "详细地址", "联系地址", "收货地址", "家庭住址", "address", "street", "street address"]),
    ("postcode", "Postcode", "邮编", T.POSTCODE, S.INTERNAL, M.NONE, False,
     ["邮编", "邮政编码", "postcode", "zip", "zip code", "postal code"]),
    ("country", "Country", "国家", T.CODE, S.PUBLIC, M.NONE, False, ["国家", "国家/地区", "country"]),
    ("tags", "Tags", "标签", T.TAGS, S.INTERNAL, M.NONE, False, ["标签", "客户标签", "tags", "labels"]),
    ("consent_marketing", "Marketing consent", "营销许可", T.BOOLEAN, S.INTERNAL, M.NONE, False,
     ["营销许可", "同意营销", "marketing consent", "opt in"]),
    ("consent_sms", "SMS consent", "短信许可", T.BOOLEAN, S.INTERNAL, M.NONE, False, ["短信许可", "sms consent"]),
    ("consent_email", "Email consent", "邮件许可", T.BOOLEAN, S.INTERNAL, M.NONE, False, ["邮件许可", "email consent"]),
]


def core_field_rows() -> list[dict]:
    return [
        {
            "name": name, "label_en": en, "label_zh": zh, "field_type": ftype, "sensitivity": sens,
            "mask_style": mask, "is_identity_key": ident, "is_core": True, "synonyms": syn, "sort_order": i * 10,
        }
        for i, (name, en, zh, ftype, sens, mask, ident, syn) in enumerate(CORE_FIELDS, start=1)
    ]
