"""Write the benchmark CSV: N customer rows with Chinese headers and mixed phone formats.

python bench/import_generate.py /tmp/customers_1m.csv --rows 1000000
"""

from __future__ import annotations

import argparse
import csv
import random

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰文斌浩宇欣怡子涵梓萱"
PLACES = [
    ("广东省", "深圳市", "南山区"),
    ("北京市", "北京市", "朝阳区"),
    ("上海市", "上海市", "浦东新区"),
    ("浙江省", "杭州市", "西湖区"),
    ("四川省", "成都市", "武侯区"),
    ("江苏省", "南京市", "鼓楼区"),
]
ROADS = "科技园路 建国路 世纪大道 文三路 天府大道 中山路".split()
DOMAINS = ["qq.com", "163.com", "126.com", "gmail.com", "sina.com", "gmial.com"]


def id_number(rng: random.Random, born: tuple[int, int, int], male: bool) -> str:
    from stdnum.cn.ric import calc_check_digit

    seq = rng.randrange(0, 50) * 2 + (1 if male else 0)
    body = f"110105{born[0]:04d}{born[1]:02d}{born[2]:02d}{rng.randrange(10):01d}{seq:02d}"
    # stdnum's calc_check_digit takes the whole number and ignores its last character.
    return body + calc_check_digit(body + "X")


def phone(rng: random.Random, n: int) -> str:
    digits = f"1{rng.choice('3456789')}{n % 1_000_000_000:09d}"
    shape = rng.random()
    if shape < 0.45:
        return digits
    if shape < 0.6:
        return f"{digits[:3]} {digits[3:7]} {digits[7:]}"
    if shape < 0.72:
        return f"+86-{digits[:3]}-{digits[3:7]}-{digits[7:]}"
    if shape < 0.82:
        return f"0086{digits}"
    if shape < 0.9:
        return f"86{digits}"
    if shape < 0.97:
        return f"+86 {digits}"
    return f"0{rng.randrange(10, 99)}-{rng.randrange(1000000, 9999999)}"  # a landline in the mobile column


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with open(args.path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["客户编号", "姓名", "手机号", "邮箱", "性别", "出生日期", "身份证号", "地址", "会员等级", "备注"])
        for i in range(args.rows):
            male = rng.random() < 0.5
            born = (rng.randrange(1950, 2005), rng.randrange(1, 13), rng.randrange(1, 29))
            birth = rng.choice(
                [
                    f"{born[0]}-{born[1]:02d}-{born[2]:02d}",
                    f"{born[0]}/{born[1]}/{born[2]}",
                    f"{born[0]}年{born[1]}月{born[2]}日",
                ]
            )
            place = rng.choice(PLACES)
            w.writerow(
                [
                    f"C{i:08d}",
                    rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2)))),
                    phone(rng, rng.randrange(10**9)),
                    f"user{i}@{rng.choice(DOMAINS)}" if rng.random() < 0.7 else "",
                    rng.choice(["男", "M", "1"]) if male else rng.choice(["女", "F", "0"]),
                    birth,
                    id_number(rng, born, male) if rng.random() < 0.3 else "",
                    f"{place[0]}{place[1]}{place[2]}{rng.choice(ROADS)}{rng.randrange(1, 999)}号",
                    rng.choice(["金卡", "银卡", "普通", ""]),
                    "=cmd|' /C calc'!A0" if i % 100_000 == 7 else "",
                ]
            )


if __name__ == "__main__":
    main()
