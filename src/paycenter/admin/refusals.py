"""The refusals of paycenter's services, said in the panel's language.

Services speak English: their messages are the merchant API's contract (the envelope's
``message``) and stay as they are. The panel says the same refusal in the operator's language:
REFUSALS holds each message as its service writes it, with ``{name}`` where it varies, and its
Russian and Kazakh wording. What varies is data (an id, a status, an amount, a field's name) and is
shown as code, except a ``{detail}``: a message of its own, said the same way ("amount: ..." from
a check that names the field before another check's words).

A message with no entry is shown as the service wrote it, as code, after a sentence in the panel's
language: the operator still reads the exact reason. tests/admin/test_refusals.py reads every
message the panel's services raise from their source and fails for one without an entry here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from paycenter.admin.i18n import TEXTS
from paycenter.admin.kk import KK
from paycenter.providers.kaspi_biller import REFUNDS_REFUSED as BILLER_NO_REFUNDS
from paycenter.providers.kaspi_qr import R1_NO_REFUNDS
from paycenter.storable import NON_FINITE, NUL, SURROGATE

# English as the service writes it: (Russian, Kazakh).
REFUSALS: dict[str, tuple[str, str]] = {
    # --- a field named before another check's words
    "{field}: {detail}": ("{field}: {detail}", "{field}: {detail}"),
    "{field} {detail}": ("{field}: {detail}", "{field}: {detail}"),
    # --- amounts and currencies (paycenter.money)
    "amount must be a number": ("сумма должна быть числом", "сома сан болуы керек"),
    "amount must be a finite number": ("сумма должна быть конечным числом", "сома шектеулі сан болуы керек"),
    "amount must be a number of at most {length} characters": (
        "сумма должна быть числом не длиннее {length} символов",
        "сома ұзындығы {length} таңбадан аспайтын сан болуы керек",
    ),
    "amount must be a number such as 500 or 500.50 (ASCII digits, a dot for decimals)": (
        "сумма должна быть числом вида 500 или 500.50 (цифры, дробная часть — после точки)",
        "сома 500 немесе 500.50 түріндегі сан болуы керек (цифрлар, бөлшек бөлігі — нүктеден кейін)",
    ),
    'amount must be a number or a string such as "500" or "500.50" (digits and one dot)': (
        "сумма должна быть числом или строкой вида «500» или «500.50» (цифры и одна точка)",
        "сома сан немесе «500», «500.50» түріндегі жол болуы керек (цифрлар және бір нүкте)",
    ),
    "amount must be a number or a string of digits": (
        "сумма должна быть числом или строкой из цифр",
        "сома сан немесе цифрлар жолы болуы керек",
    ),
    "amount is too large": ("сумма слишком велика", "сома тым үлкен"),
    "amount is too small: it has more decimal places than any currency": (
        "сумма слишком мала: знаков после точки больше, чем в любой валюте",
        "сома тым аз: нүктеден кейінгі таңбалар кез келген валютадағыдан көп",
    ),
    "amount is out of range": ("сумма вне допустимых пределов", "сома рұқсат етілген шектен тыс"),
    "amount must be greater than zero": ("сумма должна быть больше нуля", "сома нөлден үлкен болуы керек"),
    "amount must not exceed {amount} {currency}": (
        "сумма не может превышать {amount} {currency}",
        "сома {amount} {currency} аспауы керек",
    ),
    "amount has more decimal places than {currency} allows ({places})": (
        "в сумме больше знаков после точки, чем допускает {currency} ({places})",
        "сомада нүктеден кейін {currency} рұқсат ететіннен көп таңба бар ({places})",
    ),
    "amount must be a whole number for {currency}": (
        "для {currency} сумма должна быть целой",
        "{currency} үшін сома бүтін сан болуы керек",
    ),
    "Unknown currency {currency}: use an ISO 4217 code such as KZT": (
        "Неизвестная валюта {currency}: укажите код ISO 4217, например KZT",
        "Белгісіз валюта {currency}: ISO 4217 кодын көрсетіңіз, мысалы KZT",
    ),
    "Currency {currency} cannot be used for payments": (
        "Валюту {currency} нельзя использовать для платежей",
        "{currency} валютасын төлемдерге қолдануға болмайды",
    ),
    "currency must be a three-letter ISO 4217 code such as KZT": (
        "валюта должна быть трёхбуквенным кодом ISO 4217, например KZT",
        "валюта ISO 4217 бойынша үш әріпті код болуы керек, мысалы KZT",
    ),
    # --- merchants, tokens, terminals
    "a tolerance is required": ("укажите допустимую недоплату", "рұқсат етілген кем төлемді көрсетіңіз"),
    "underpayment tolerance: {detail}": ("допустимая недоплата: {detail}", "рұқсат етілген кем төлем: {detail}"),
    "underpayment tolerance must be 0 to {max} (major units)": (
        "допустимая недоплата должна быть от 0 до {max} (в основных единицах валюты)",
        "рұқсат етілген кем төлем 0 мен {max} аралығында болуы керек (валютаның негізгі бірлігімен)",
    ),
    "Merchant {merchant} not found": ("Мерчант {merchant} не найден", "{merchant} мерчанты табылмады"),
    "Token {token} not found": ("Токен {token} не найден", "{token} токені табылмады"),
    "A terminal named {name} exists already": (
        "Терминал с названием {name} уже есть",
        "{name} атты терминал бұрыннан бар",
    ),
    "Terminal {terminal} not found": ("Терминал {terminal} не найден", "{terminal} терминалы табылмады"),
    "Unknown API version {version}: one of {versions}": (
        "Неизвестная версия API {version}: допустимы {versions}",
        "Белгісіз API нұсқасы {version}: рұқсат етілгендері {versions}",
    ),
    "Webhook delivery not found": ("Доставка вебхука не найдена", "Вебхук жеткізілімі табылмады"),
    # --- payments
    "Payment not found": ("Платёж не найден", "Төлем табылмады"),
    "Payment has expired": ("Срок платежа истёк", "Төлемнің мерзімі өтті"),
    "Payment has expired and can no longer be cancelled": (
        "Срок платежа истёк, отменить его уже нельзя",
        "Төлемнің мерзімі өтті, оны енді болдырмау мүмкін емес",
    ),
    "Payment is {status} and can no longer be cancelled": (
        "Платёж в статусе {status}, отменить его уже нельзя",
        "Төлем {status} күйінде, оны енді болдырмау мүмкін емес",
    ),
    "Payment is {status} and can no longer be paid": (
        "Платёж в статусе {status}, оплатить его уже нельзя",
        "Төлем {status} күйінде, оны енді төлеу мүмкін емес",
    ),
    "{provider} transaction {transaction} is already recorded on another payment": (
        "Операция {provider} {transaction} уже записана на другой платёж",
        "{provider} операциясы {transaction} басқа төлемге жазылып қойған",
    ),
    "Unknown payment method {method}": ("Неизвестный способ оплаты {method}", "Белгісіз төлем тәсілі {method}"),
    "Unknown payment method {method}: see GET /api/payment-methods": (
        "Неизвестный способ оплаты {method}: список — `GET /api/payment-methods`",
        "Белгісіз төлем тәсілі {method}: тізімі — `GET /api/payment-methods`",
    ),
    "payment_method_id must be one of the ids {ids} or a code of GET /api/payment-methods": (
        "`payment_method_id` должен быть одним из идентификаторов {ids} или кодом из `GET /api/payment-methods`",
        "`payment_method_id` {ids} идентификаторларының бірі немесе `GET /api/payment-methods` коды болуы керек",
    ),
    "provider {provider} is not available; use one of: {providers}": (
        "провайдер {provider} недоступен; доступны: {providers}",
        "{provider} провайдері қолжетімсіз; қолжетімділері: {providers}",
    ),
    "account is for provider {biller} only, not {provider}": (
        "номер счёта бывает только у провайдера {biller}, не у {provider}",
        "шот нөмірі тек {biller} провайдерінде болады, {provider} провайдерінде емес",
    ),
    "provider {provider} takes {currency} only": (
        "провайдер {provider} принимает только {currency}",
        "{provider} провайдері тек {currency} қабылдайды",
    ),
    "account must be 1 to 20 digits (0-9)": (
        "номер счёта — от 1 до 20 цифр (0-9)",
        "шот нөмірі — 1-ден 20-ға дейін цифр (0-9)",
    ),
    "unknown status {status}; use {statuses}": (
        "неизвестный статус {status}; допустимы {statuses}",
        "белгісіз күй {status}; рұқсат етілгендері {statuses}",
    ),
    # --- metadata and stored text (paycenter.payments.schemas, paycenter.storable)
    "metadata must be a JSON object": ("метаданные должны быть объектом JSON", "метадеректер JSON нысаны болуы керек"),
    "metadata texts must be at most {length} characters": (
        "тексты в метаданных — не длиннее {length} символов",
        "метадеректердегі мәтіндер {length} таңбадан аспауы керек",
    ),
    "metadata must have at most {count} keys": (
        "в метаданных — не больше {count} ключей",
        "метадеректерде {count} кілттен аспауы керек",
    ),
    "metadata must have at most {count} keys (link_id is added)": (
        "в метаданных — не больше {count} ключей (`link_id` добавляется)",
        "метадеректерде {count} кілттен аспауы керек (`link_id` қосылады)",
    ),
    "metadata key {key}… is longer than {length} characters": (
        "ключ метаданных {key}… длиннее {length} символов",
        "{key}… метадеректер кілті {length} таңбадан ұзын",
    ),
    NUL: ("не должно содержать символов NUL", "NUL таңбалары болмауы керек"),
    SURROGATE: (
        "должно быть правильным текстом в Юникоде (без одиночных суррогатов вроде `\\ud800`)",
        "дұрыс Юникод мәтіні болуы керек (`\\ud800` сияқты жалғыз суррогаттарсыз)",
    ),
    NON_FINITE: (
        "должно содержать только конечные числа (без `NaN`, `Infinity` и чисел больше ±1.8e308)",
        "тек шектеулі сандар болуы керек (`NaN`, `Infinity` және ±1.8e308-ден үлкен сандарсыз)",
    ),
    "must not nest objects and arrays more than {depth} levels deep": (
        "вложенность объектов и массивов — не больше {depth} уровней",
        "нысандар мен массивтердің кірістірілуі {depth} деңгейден аспауы керек",
    ),
    # --- refunds
    "Refund amount exceeds the refundable sum of {amount} {currency}": (
        "Сумма возврата больше той, что можно вернуть: {amount} {currency}",
        "Қайтару сомасы қайтаруға болатын сомадан асады: {amount} {currency}",
    ),
    "Payment is {status} and has received no money to refund": (
        "Платёж в статусе {status}: денег, которые можно вернуть, не поступало",
        "Төлем {status} күйінде: қайтаратын ақша түспеген",
    ),
    "Payment has already been refunded in full": (
        "Платёж уже возвращён полностью",
        "Төлем толығымен қайтарылып қойған",
    ),
    "Nothing left to refund: earlier refunds cover everything paid": (
        "Возвращать нечего: прежние возвраты покрывают всю оплату",
        "Қайтаратын ештеңе жоқ: бұрынғы қайтарулар бүкіл төлемді жабады",
    ),
    "Payments of {provider} are refunded through paycenter: use the refund, not a manual record": (
        "Платежи {provider} возвращаются через paycenter: сделайте возврат, а не ручную запись",
        "{provider} төлемдері paycenter арқылы қайтарылады: қолмен жазуды емес, қайтаруды қолданыңыз",
    ),
    "This form was already used for another payment": (
        "Эта форма уже использована для другого платежа",
        "Бұл форма басқа төлем үшін қолданылып қойған",
    ),
    "A note is required: how and where the money was returned": (
        "Нужно примечание: как и где вернули деньги",
        "Ескертпе қажет: ақша қалай және қай жерде қайтарылды",
    ),
    "amount is required: the sum that went back": ("укажите сумму, которую вернули", "қайтарылған соманы көрсетіңіз"),
    "Refund not found": ("Возврат не найден", "Қайтару табылмады"),
    "Refund leg not found": ("Часть возврата не найдена", "Қайтарудың бөлігі табылмады"),
    R1_NO_REFUNDS: (TEXTS["refunds_refused_kaspi_qr"][0], KK["refunds_refused_kaspi_qr"]),
    BILLER_NO_REFUNDS: (TEXTS["refunds_refused_kaspi_biller"][0], KK["refunds_refused_kaspi_biller"]),
    # --- payment links
    "This payment link has been disabled": ("Эта ссылка на оплату отключена", "Бұл төлем сілтемесі өшірілген"),
    "This payment link has expired": (
        "Срок действия этой ссылки на оплату истёк",
        "Бұл төлем сілтемесінің мерзімі өтті",
    ),
    "This payment link no longer makes payments": (
        "Эта ссылка больше не создаёт платежей",
        "Бұл сілтеме енді төлем жасамайды",
    ),
    "A one-off link has its one payment": (
        "У разовой ссылки только один платёж",
        "Бір реттік сілтемеде бір ғана төлем болады",
    ),
    "Payment link not found": ("Ссылка на оплату не найдена", "Төлем сілтемесі табылмады"),
    "link not found": ("Ссылка на оплату не найдена", "Төлем сілтемесі табылмады"),
    "give either a fixed amount or min_amount and max_amount, not both": (
        "укажите либо фиксированную сумму, либо `min_amount` и `max_amount`, но не всё сразу",
        "не тұрақты соманы, не `min_amount` пен `max_amount` көрсетіңіз, бәрін бірге емес",
    ),
    "a one-off link needs a fixed amount": (
        "разовой ссылке нужна фиксированная сумма",
        "бір реттік сілтемеге тұрақты сома керек",
    ),
    "give a fixed amount, or both min_amount and max_amount": (
        "укажите фиксированную сумму или обе границы: `min_amount` и `max_amount`",
        "тұрақты соманы немесе екі шекті де көрсетіңіз: `min_amount` және `max_amount`",
    ),
    "a one-off link expires with its payment: use expires_in": (
        "разовая ссылка действует, пока действует её платёж: задайте `expires_in`",
        "бір реттік сілтеме төлемі жарамды болғанша жарамды: `expires_in` көрсетіңіз",
    ),
    "enter the amount": ("введите сумму", "соманы енгізіңіз"),
    "must be from {low} to {high} {currency}": (
        "должна быть от {low} до {high} {currency}",
        "{low} мен {high} {currency} аралығында болуы керек",
    ),
    "metadata: not valid JSON": ("метаданные: это не JSON", "метадеректер: бұл JSON емес"),
    "metadata: must be a JSON object": ("метаданные: нужен объект JSON", "метадеректер: JSON нысаны керек"),
    "expires: a whole number of minutes, and a date as YYYY-MM-DDTHH:MM": (
        "срок: целое число минут, а дата — в виде `YYYY-MM-DDTHH:MM`",
        "мерзім: минуттардың бүтін саны, ал күні — `YYYY-MM-DDTHH:MM` түрінде",
    ),
    "merchant: choose a merchant": ("мерчант: выберите мерчанта", "мерчант: мерчантты таңдаңыз"),
    "qr: png or svg": ("QR: PNG или SVG", "QR: PNG немесе SVG"),
    # --- the panel's filters and addresses (paycenter.admin.queries, paycenter.admin.web)
    "status {status} is not one of {statuses}": (
        "статус {status} — не один из {statuses}",
        "{status} күйі {statuses} ішінде жоқ",
    ),
    "date {date} must be YYYY-MM-DD": (
        "дата {date} должна быть в виде `YYYY-MM-DD`",
        "{date} күні `YYYY-MM-DD` түрінде болуы керек",
    ),
    "date {date} must be between {first} and {last}": (
        "дата {date} должна быть между {first} и {last}",
        "{date} күні {first} мен {last} аралығында болуы керек",
    ),
    "amount {value}: {detail}": ("сумма {value}: {detail}", "сома {value}: {detail}"),
    "merchant {detail}": ("мерчант: {detail}", "мерчант: {detail}"),
    "path {detail}": ("адрес страницы: {detail}", "бет мекенжайы: {detail}"),
    "cursor is not valid: pass next_cursor from a previous page": (
        "неверный курсор: откройте следующую страницу по ссылке «Дальше»",
        "курсор жарамсыз: келесі бетті «Әрі қарай» сілтемесімен ашыңыз",
    ),
    # --- URLs (paycenter.contract, paycenter.webhooks.ssrf)
    "{field} must be at most {length} characters": (
        "{field}: не длиннее {length} символов",
        "{field}: {length} таңбадан аспауы керек",
    ),
    "{field} must be an http:// or https:// URL with a host name in ASCII (an IDN in its xn-- form) or an IP "
    "address, an optional port, and no spaces": (
        "{field} должен быть адресом `http://` или `https://` с именем хоста в ASCII (IDN — в виде `xn--`) или "
        "IP-адресом, с портом или без, без пробелов",
        "{field} `http://` немесе `https://` мекенжайы болуы керек: хост атауы ASCII түрінде (IDN — `xn--` "
        "түрінде) немесе IP мекенжайы, порты болса да, болмаса да, бос орынсыз",
    ),
    "{field} is not a valid URL: {detail}": ("{field}: неверный URL: {detail}", "{field}: URL жарамсыз: {detail}"),
    "{field} is refused: {detail} (webhooks may not reach private networks)": (
        "{field} отклонён: {detail} (вебхуки не отправляются во внутренние сети)",
        "{field} қабылданбады: {detail} (вебхуктер ішкі желілерге жіберілмейді)",
    ),
    "{field} must name its host: an IP address ({ip}) is taken only inside PAYCENTER_WEBHOOK_ALLOWED_NETWORKS": (
        "в {field} нужно имя хоста: IP-адрес ({ip}) принимается только из `PAYCENTER_WEBHOOK_ALLOWED_NETWORKS`",
        "{field} ішінде хост атауы керек: IP мекенжайы ({ip}) тек `PAYCENTER_WEBHOOK_ALLOWED_NETWORKS` ішінде "
        "қабылданады",
    ),
    "{field} has no usable host: {host} is neither a host name nor an IP address": (
        "в {field} нет годного хоста: {host} — не имя хоста и не IP-адрес",
        "{field} ішінде жарамды хост жоқ: {host} хост атауы да, IP мекенжайы да емес",
    ),
    "not a valid URL: {detail}": ("неверный URL: {detail}", "URL жарамсыз: {detail}"),
    "scheme {scheme} is not allowed": ("схема {scheme} не разрешена", "{scheme} схемасына рұқсат жоқ"),
    "URL has no host": ("в URL нет хоста", "URL ішінде хост жоқ"),
    "address {address} is not allowed": ("адрес {address} не разрешён", "{address} мекенжайына рұқсат жоқ"),
    "address {address} is not allowed (refused at connect)": (
        "адрес {address} не разрешён (отказано при соединении)",
        "{address} мекенжайына рұқсат жоқ (қосылу кезінде бас тартылды)",
    ),
    "{host} resolves to {address}, which is not allowed": (
        "{host} указывает на {address}, а этот адрес не разрешён",
        "{host} {address} мекенжайына сілтейді, оған рұқсат жоқ",
    ),
    # --- the contract's checks of a field (paycenter.contract), after the field's name
    "must be an integer": ("должно быть целым числом", "бүтін сан болуы керек"),
    "must be an RFC 3339 date-time string such as 2024-05-01T12:00:00Z": (
        "должно быть датой и временем по RFC 3339, например 2024-05-01T12:00:00Z",
        "RFC 3339 бойынша күн мен уақыт болуы керек, мысалы 2024-05-01T12:00:00Z",
    ),
    "must be an RFC 3339 date-time with a zone, such as 2024-05-01T12:00:00Z": (
        "должно быть датой и временем по RFC 3339 с часовым поясом, например 2024-05-01T12:00:00Z",
        "RFC 3339 бойынша уақыт белдеуі бар күн мен уақыт болуы керек, мысалы 2024-05-01T12:00:00Z",
    ),
    "has a zone offset out of range": ("смещение часового пояса вне пределов", "уақыт белдеуінің ығысуы шектен тыс"),
    "is not a date and time that exists": ("такой даты и времени не бывает", "мұндай күн мен уақыт болмайды"),
    # --- pydantic's own words, for the checks of a model (a payment link's form)
    "String should have at most {length} characters": (
        "не длиннее {length} символов",
        "{length} таңбадан аспауы керек",
    ),
    "String should have at least {length} characters": (
        "не короче {length} символов",
        "кемінде {length} таңба болуы керек",
    ),
    "Input should be greater than or equal to {limit}": ("не меньше {limit}", "{limit} мәнінен кем болмауы керек"),
    "Input should be greater than {limit}": ("больше {limit}", "{limit} мәнінен үлкен болуы керек"),
    "Input should be less than or equal to {limit}": ("не больше {limit}", "{limit} мәнінен аспауы керек"),
    "Input should be a valid integer": ("нужно целое число", "бүтін сан керек"),
    "Field required": ("обязательное поле", "міндетті өріс"),
}

# What a placeholder takes: a field's name is one token; anything else is the rest, shortest first.
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_SHAPES = {"field": r"[A-Za-z_][\w.\[\]-]*"}
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class _Refusal:
    pattern: re.Pattern[str]
    words: tuple[str, str]  # (ru, kk)


def _compile(template: str) -> re.Pattern[str]:
    parts, last = [], 0
    for found in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last : found.start()]))
        parts.append(f"(?P<{found[1]}>{_SHAPES.get(found[1], '.+?')})")
        last = found.end()
    parts.append(re.escape(template[last:]))
    return re.compile("".join(parts), re.DOTALL)


@cache
def _refusals() -> tuple[_Refusal, ...]:
    # The most words of its own first: "Payment not found" before "{field} {detail}".
    ordered = sorted(REFUSALS.items(), key=lambda item: -len(_PLACEHOLDER.sub("", item[0])))
    return tuple(_Refusal(_compile(template), words) for template, words in ordered)


def _code(value: str) -> str:
    return "`" + value.replace("`", "'") + "`"


def _value(value: str) -> str:
    # A count or an amount reads the same in every language; anything else is data, as code.
    return value if _NUMBER.fullmatch(value) else _code(value)


UNTRANSLATED = {"ru": "Отказ: {message}", "kk": "Бас тарту: {message}"}


def translate(message: str, lang: str) -> tuple[str, bool]:
    """``message`` in ``lang``, and whether it had its words here. A message without them (or
    with a detail without them: no half-translated sentence) is shown as the service wrote it,
    as code, after a sentence in ``lang``."""
    if lang not in UNTRANSLATED:
        return message, True
    said = _said(message, 0 if lang == "ru" else 1)
    if said is None:
        return UNTRANSLATED[lang].format(message=_code(message)), False
    return said, True


def _said(message: str, index: int) -> str | None:
    for refusal in _refusals():
        found = refusal.pattern.fullmatch(message)
        if found is None:
            continue
        values: dict[str, str] = {}
        for name, value in found.groupdict().items():
            if name == "detail":
                detail = _said(value, index)
                if detail is None:
                    break
                values[name] = detail
            else:
                values[name] = _value(value)
        else:
            return refusal.words[index].format(**values)
    return None


def say(message: str, lang: str) -> str:
    """A service's refusal in the panel's language; its codes between backticks (see ``codes``)."""
    return translate(message, lang)[0]
