"""Texts of the payment page in Russian (the default), English and Kazakh."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from paycenter.money import shown_exponent

LANGUAGES = ("ru", "en", "kk")
DEFAULT = "ru"
LANGUAGE_NAMES = {"ru": "Рус", "kk": "Қаз", "en": "Eng"}

TEXTS: dict[str, dict[str, str]] = {
    "title": {"ru": "Оплата", "en": "Payment", "kk": "Төлем"},
    "pay_to": {"ru": "Получатель", "en": "Pay to", "kk": "Алушы"},
    "purpose": {"ru": "Назначение", "en": "For", "kk": "Мақсаты"},
    "amount": {"ru": "Сумма", "en": "Amount", "kk": "Сома"},
    "paid": {"ru": "Оплачено", "en": "Paid", "kk": "Төленді"},
    "remaining": {"ru": "Осталось оплатить", "en": "Left to pay", "kk": "Төлеуге қалды"},
    "refunded": {"ru": "Возвращено", "en": "Refunded", "kk": "Қайтарылды"},
    "expires_in": {"ru": "Ссылка действует ещё", "en": "This link is valid for", "kk": "Сілтеме жарамды"},
    "status_pending": {"ru": "Ожидает оплаты", "en": "Awaiting payment", "kk": "Төлемді күтуде"},
    "status_processing": {"ru": "Обрабатывается", "en": "Processing", "kk": "Өңделуде"},
    "status_partially_paid": {"ru": "Оплачен частично", "en": "Partially paid", "kk": "Ішінара төленді"},
    "status_paid": {"ru": "Оплачен", "en": "Paid", "kk": "Төленді"},
    "status_cancelled": {"ru": "Отменён", "en": "Cancelled", "kk": "Тоқтатылды"},
    "status_expired": {"ru": "Срок оплаты истёк", "en": "Expired", "kk": "Төлеу мерзімі өтті"},
    "status_refunded": {"ru": "Возвращён", "en": "Refunded", "kk": "Қайтарылды"},
    "status_failed": {"ru": "Ошибка оплаты", "en": "Payment failed", "kk": "Төлем сәтсіз"},
    "sandbox_title": {"ru": "Тестовая оплата", "en": "Test payment", "kk": "Тестілік төлем"},
    "sandbox_note": {
        "ru": "Это песочница: деньги не списываются, кнопки ниже играют роль банка.",
        "en": "This is the sandbox: no money moves, the buttons below play the bank.",
        "kk": "Бұл құмсалғыш: ақша шешілмейді, төмендегі батырмалар банктің рөлін атқарады.",
    },
    "pay_full": {"ru": "Оплатить {amount}", "en": "Pay {amount}", "kk": "{amount} төлеу"},
    "pay_part": {"ru": "Оплатить часть", "en": "Pay part", "kk": "Бір бөлігін төлеу"},
    "part_amount": {"ru": "Сумма части", "en": "Part amount", "kk": "Бөлік сомасы"},
    "payer_cancel": {"ru": "Отменить попытку", "en": "Cancel this attempt", "kk": "Әрекеттен бас тарту"},
    "fail": {"ru": "Банк отказал", "en": "Bank declines", "kk": "Банк бас тартты"},
    "notice_paid": {
        "ru": "Платёж получен. Спасибо!",
        "en": "Payment received. Thank you!",
        "kk": "Төлем қабылданды. Рахмет!",
    },
    "notice_partial": {
        "ru": "Часть суммы оплачена. Оплатите остаток.",
        "en": "Part of the amount is paid. Please pay the rest.",
        "kk": "Соманың бір бөлігі төленді. Қалғанын төлеңіз.",
    },
    "notice_cancelled": {
        "ru": "Попытка отменена. Можно оплатить снова.",
        "en": "Attempt cancelled. You can pay again.",
        "kk": "Әрекет тоқтатылды. Қайта төлеуге болады.",
    },
    "notice_failed": {
        "ru": "Банк отклонил оплату. Попробуйте ещё раз.",
        "en": "The bank declined the payment. Please try again.",
        "kk": "Банк төлемді қабылдамады. Қайталап көріңіз.",
    },
    "notice_duplicate": {
        "ru": "Эта оплата уже учтена.",
        "en": "This payment was already counted.",
        "kk": "Бұл төлем бұрын есепке алынған.",
    },
    "error_amount": {
        "ru": "Неверная сумма: укажите число больше нуля, не больше остатка.",
        "en": "Invalid amount: enter a number above zero and no more than what remains.",
        "kk": "Сома қате: нөлден үлкен, қалдықтан аспайтын сан енгізіңіз.",
    },
    "error_state": {
        "ru": "Этот платёж уже нельзя оплатить.",
        "en": "This payment can no longer be paid.",
        "kk": "Бұл төлемді енді төлеу мүмкін емес.",
    },
    "error_provider": {
        "ru": "Этот платёж оплачивается другим способом.",
        "en": "This payment is paid another way.",
        "kk": "Бұл төлем басқа тәсілмен төленеді.",
    },
    "kaspi_title": {"ru": "Оплата через Kaspi", "en": "Pay with Kaspi", "kk": "Kaspi арқылы төлеу"},
    "choose_method": {
        "ru": "Выберите способ оплаты",
        "en": "Choose how to pay",
        "kk": "Төлеу тәсілін таңдаңыз",
    },
    "pay_with": {"ru": "{name}: {amount}", "en": "{name}: {amount}", "kk": "{name}: {amount}"},
    "with_fee_note": {
        "ru": "Сумма включает комиссию банка.",
        "en": "The amount includes the bank's fee.",
        "kk": "Сомаға банк комиссиясы кіреді.",
    },
    "pay_kaspi": {"ru": "Оплатить через Kaspi", "en": "Pay with Kaspi", "kk": "Kaspi арқылы төлеу"},
    "pay_rest": {"ru": "Оплатить остаток", "en": "Pay the rest", "kk": "Қалғанын төлеу"},
    "scan_qr": {
        "ru": "Отсканируйте QR-код в приложении Kaspi.kz",
        "en": "Scan the QR code in the Kaspi.kz app",
        "kk": "QR-кодты Kaspi.kz қосымшасында сканерлеңіз",
    },
    "open_in_kaspi": {"ru": "Открыть в Kaspi", "en": "Open in Kaspi", "kk": "Kaspi-де ашу"},
    "qr_valid_for": {"ru": "QR-код действует ещё", "en": "The QR code is valid for", "kk": "QR-код жарамды"},
    "at_terminal": {
        "ru": "Оплатите на терминале «{name}»",
        "en": "Pay at terminal “{name}”",
        "kk": "«{name}» терминалында төлеңіз",
    },
    "to_pay": {"ru": "К оплате", "en": "To pay", "kk": "Төлеуге"},
    "cancel_attempt": {"ru": "Отменить", "en": "Cancel", "kk": "Бас тарту"},
    "new_qr": {"ru": "Новый QR-код", "en": "New QR code", "kk": "Жаңа QR-код"},
    "waiting_bank": {
        "ru": "Ждём подтверждения от Kaspi…",
        "en": "Waiting for Kaspi to confirm…",
        "kk": "Kaspi растауын күтудеміз…",
    },
    "error_terminals_busy": {
        "ru": "Все терминалы заняты. Попробуйте через минуту.",
        "en": "All terminals are busy. Please try again in a minute.",
        "kk": "Барлық терминалдар бос емес. Бір минуттан кейін қайталаңыз.",
    },
    "error_bank": {
        "ru": "Банк сейчас не отвечает. Попробуйте ещё раз.",
        "en": "The bank is not answering right now. Please try again.",
        "kk": "Банк қазір жауап бермей тұр. Қайталап көріңіз.",
    },
    "error_in_progress": {
        "ru": "Оплата уже начата: завершите её или отмените.",
        "en": "A payment is already under way: finish or cancel it.",
        "kk": "Төлем басталып қойған: аяқтаңыз немесе бас тартыңыз.",
    },
    "done_paid": {"ru": "Оплата прошла успешно", "en": "Payment successful", "kk": "Төлем сәтті өтті"},
    "done_closed": {
        "ru": "Этот платёж закрыт и не может быть оплачен.",
        "en": "This payment is closed and cannot be paid.",
        "kk": "Бұл төлем жабық, оны төлеу мүмкін емес.",
    },
    "return_shop": {"ru": "Вернуться в магазин", "en": "Back to the shop", "kk": "Дүкенге оралу"},
    "redirecting": {
        "ru": "Возвращаем в магазин через {s} с…",
        "en": "Returning you to the shop in {s} s…",
        "kk": "{s} секундтан кейін дүкенге ораламыз…",
    },
    "not_found": {"ru": "Платёж не найден", "en": "Payment not found", "kk": "Төлем табылмады"},
    "not_found_note": {
        "ru": "Проверьте ссылку или вернитесь в магазин.",
        "en": "Check the link or go back to the shop.",
        "kk": "Сілтемені тексеріңіз немесе дүкенге оралыңыз.",
    },
    "refund_title": {"ru": "Возврат", "en": "Refund", "kk": "Қайтару"},
    "refund_amount": {"ru": "Сумма возврата", "en": "Refund amount", "kk": "Қайтару сомасы"},
    "refund_scan": {
        "ru": "Чтобы получить деньги, откройте приложение Kaspi.kz, нажмите «Kaspi QR» и отсканируйте этот код.",
        "en": "To receive the money, open the Kaspi.kz app, tap Kaspi QR and scan this code.",
        "kk": "Ақшаны алу үшін Kaspi.kz қосымшасын ашып, «Kaspi QR» батырмасын басыңыз да, осы кодты сканерлеңіз.",
    },
    "refund_scan_same_account": {
        "ru": "Сканируйте с того же аккаунта Kaspi, с которого оплачивали.",
        "en": "Scan with the same Kaspi account you paid with.",
        "kk": "Төлеген Kaspi аккаунтыңызбен сканерлеңіз.",
    },
    "refund_scanned": {
        "ru": "Код отсканирован, возвращаем деньги…",
        "en": "Code scanned, returning the money…",
        "kk": "Код сканерленді, ақшаны қайтарып жатырмыз…",
    },
    "refund_qr_expired": {
        "ru": "Срок действия кода истёк. Попросите магазин оформить возврат снова.",
        "en": "This code has expired. Ask the shop to start the refund again.",
        "kk": "Кодтың мерзімі өтті. Дүкеннен қайтаруды қайта ресімдеуді сұраңыз.",
    },
    "refund_processing": {
        "ru": "Банк обрабатывает возврат…",
        "en": "The bank is processing the refund…",
        "kk": "Банк қайтаруды өңдеп жатыр…",
    },
    "refund_done": {
        "ru": "Деньги возвращены: {amount}",
        "en": "The money has been returned: {amount}",
        "kk": "Ақша қайтарылды: {amount}",
    },
    "refund_failed": {
        "ru": "Возврат не прошёл. Обратитесь в магазин.",
        "en": "The refund did not go through. Please contact the shop.",
        "kk": "Қайтару өтпеді. Дүкенге хабарласыңыз.",
    },
    "refund_receive": {"ru": "Получить возврат", "en": "Receive your refund", "kk": "Қайтаруды алу"},
    "refund_not_found": {"ru": "Возврат не найден", "en": "Refund not found", "kk": "Қайтару табылмады"},
    "biller_title": {
        "ru": "Оплата по номеру счёта в Kaspi",
        "en": "Pay by account number in Kaspi",
        "kk": "Kaspi-де шот нөмірі бойынша төлеу",
    },
    "biller_account": {"ru": "Номер счёта", "en": "Account number", "kk": "Шот нөмірі"},
    "biller_copy": {"ru": "Скопировать", "en": "Copy", "kk": "Көшіру"},
    "biller_copied": {"ru": "Скопировано", "en": "Copied", "kk": "Көшірілді"},
    "biller_step_open": {
        "ru": "Откройте приложение Kaspi.kz.",
        "en": "Open the Kaspi.kz app.",
        "kk": "Kaspi.kz қосымшасын ашыңыз.",
    },
    "biller_step_payments": {
        "ru": "Перейдите в раздел «Платежи».",
        "en": "Go to Payments («Платежи» / «Төлемдер» in the app).",
        "kk": "«Төлемдер» бөліміне өтіңіз.",
    },
    "biller_step_find": {
        "ru": "Найдите через поиск «{name}».",
        "en": "Search for “{name}” and open it.",
        "kk": "Іздеу арқылы «{name}» табыңыз.",
    },
    "biller_step_account": {
        "ru": "Введите номер счёта {account}.",
        "en": "Enter the account number {account}.",
        "kk": "{account} шот нөмірін енгізіңіз.",
    },
    "biller_step_pay": {
        "ru": "Проверьте сумму {amount} и оплатите.",
        "en": "Check that the amount is {amount} and pay.",
        "kk": "{amount} сомасын тексеріп, төлеңіз.",
    },
    "biller_waiting": {
        "ru": "Когда Kaspi сообщит об оплате, эта страница обновится сама.",
        "en": "Once Kaspi reports the payment, this page updates by itself.",
        "kk": "Kaspi төлем туралы хабарлағанда, бұл бет өздігінен жаңарады.",
    },
    "secure_note": {
        "ru": "Статус обновляется автоматически.",
        "en": "The status updates by itself.",
        "kk": "Күйі өздігінен жаңарады.",
    },
    # --- payment links (/l/{id})
    "link_pay": {"ru": "Перейти к оплате", "en": "Continue to payment", "kk": "Төлемге өту"},
    "link_amount_range": {
        "ru": "Сумма от {low} до {high}",
        "en": "Amount from {low} to {high}",
        "kk": "Сома {low} бастап {high} дейін",
    },
    "link_amount_error": {
        "ru": "Введите сумму от {low} до {high}.",
        "en": "Enter an amount from {low} to {high}.",
        "kk": "{low} бастап {high} дейінгі соманы енгізіңіз.",
    },
    "link_unavailable": {
        "ru": "Ссылка на оплату больше не действует",
        "en": "This payment link is no longer valid",
        "kk": "Бұл төлем сілтемесі енді жарамсыз",
    },
    "link_unavailable_note": {
        "ru": "Попросите продавца прислать новую ссылку.",
        "en": "Ask the seller for a new link.",
        "kk": "Сатушыдан жаңа сілтеме сұраңыз.",
    },
    "link_too_many": {
        "ru": "Слишком много платежей с этого адреса. Попробуйте через минуту.",
        "en": "Too many payments from this address. Try again in a minute.",
        "kk": "Бұл мекенжайдан төлемдер тым көп. Бір минуттан кейін қайталаңыз.",
    },
}


def translator(lang: str) -> Callable[..., str]:
    def t(key: str, **kwargs: object) -> str:
        text = TEXTS[key].get(lang) or TEXTS[key][DEFAULT]
        return text.format(**kwargs) if kwargs else text

    return t


SYMBOLS = {"KZT": "₸", "RUB": "₽", "USD": "$", "EUR": "€", "KGS": "сом", "UZS": "сўм"}


def format_number(minor: int, currency: str, lang: str, *, grouping: bool = True) -> str:
    """1500000 KZT -> "15 000,00" in Russian and Kazakh, "15,000.00" in English."""
    exp = shown_exponent(currency)
    value = Decimal(minor).scaleb(-exp)
    text = f"{value:{',' if grouping else ''}.{exp}f}"
    if lang != "en":
        text = text.replace(",", "\u202f").replace(".", ",")
    return text


def format_money(minor: int, currency: str, lang: str) -> str:
    """1500000 KZT -> "15 000,00 ₸" in Russian and Kazakh, "15,000.00 ₸" in English."""
    return f"{format_number(minor, currency, lang)}\u00a0{SYMBOLS.get(currency, currency)}"
