"""Admin panel texts: Russian (default), Kazakh and English, one language a page.

TEXTS holds each text as (ru, en); the Kazakh ones are in ``paycenter.admin.kk`` (KK), a text
for every key of TEXTS (tests/admin/test_i18n.py fails for a key without one). Codes inside a text
(a command, a setting's name, a protocol field) go between backticks: the pages show them as code.
A missing key shows the key itself."""

from __future__ import annotations

from collections.abc import Callable

from paycenter.admin.kk import KK

LANGUAGES = ("ru", "kk", "en")

TEXTS: dict[str, tuple[str, str]] = {
    # (ru, en)
    "admin": ("Админка", "Admin"),
    "login": ("Вход", "Sign in"),
    "username": ("Логин", "Username"),
    "password": ("Пароль", "Password"),
    "sign_in": ("Войти", "Sign in"),
    "logout": ("Выйти", "Sign out"),
    "wrong_login": ("Неверный логин или пароль.", "Wrong username or password."),
    "login_form_expired": (
        "Форма входа устарела. Введите логин и пароль ещё раз.",
        "The sign-in form has expired. Please enter your username and password again.",
    ),
    "login_locked": (
        "Слишком много неудачных попыток входа. Попробуйте снова через {minutes} мин.",
        "Too many failed logins. Try again in {minutes} min.",
    ),
    "one_time_password_expired": (
        "Срок действия одноразового пароля истёк. Попросите администратора выполнить "
        "`paycenter admin reset-password` для вашего логина.",
        "This one-time password has expired. Ask an administrator to run "
        "`paycenter admin reset-password` for your username.",
    ),
    "change_password": ("Сменить пароль", "Change password"),
    "must_change_password": (
        "Вы вошли с одноразовым паролем. Придумайте свой пароль, чтобы продолжить.",
        "You signed in with a one-time password. Choose your own password to continue.",
    ),
    "current_password": ("Текущий пароль", "Current password"),
    "current_password_one_time": ("Одноразовый пароль", "One-time password"),
    "new_password": ("Новый пароль", "New password"),
    "new_password_again": ("Новый пароль ещё раз", "New password again"),
    "password_rule": (
        "не короче {min} символов, не совпадает с логином и текущим паролем",
        "at least {min} characters, not your username or current password",
    ),
    "password_mismatch": ("Новые пароли не совпадают.", "The new passwords do not match."),
    "password_too_short": (
        "Новый пароль слишком короткий: нужно не меньше {min} символов.",
        "The new password is too short: at least {min} characters.",
    ),
    "password_too_long": ("Новый пароль слишком длинный.", "The new password is too long."),
    "password_same_as_current": (
        "Новый пароль должен отличаться от текущего.",
        "The new password must differ from the current one.",
    ),
    "password_is_username": (
        "Пароль не может совпадать с логином.",
        "The password cannot be your username.",
    ),
    "password_changed_meanwhile": (
        "Пароль только что изменили в другом месте. Войдите снова.",
        "The password was changed elsewhere just now. Please sign in again.",
    ),
    "wrong_current_password": ("Текущий пароль неверен.", "The current password is wrong."),
    "password_changed": (
        "Пароль изменён. Другие ваши сеансы завершены.",
        "Password changed. Your other sessions have been ended.",
    ),
    "dashboard": ("Сводка", "Dashboard"),
    "transactions": ("Транзакции", "Transactions"),
    "webhooks": ("Вебхуки", "Webhooks"),
    "merchants": ("Мерчанты", "Merchants"),
    "terminals": ("Терминалы", "Terminals"),
    "audit": ("Журнал действий", "Audit log"),
    "api_docs": ("Документация API", "API docs"),
    "today": ("Сегодня", "Today"),
    "last_30": ("30 дней", "Last 30 days"),
    "volume": ("Оборот", "Volume"),
    "count": ("Кол-во", "Count"),
    "conversion": ("Конверсия в оплату", "Paid conversion"),
    "webhook_success": ("Успешные вебхуки", "Webhook success"),
    "backlog": ("Очередь вебхуков", "Webhook backlog"),
    "workers": ("Воркеры", "Workers"),
    "alive": ("работает", "alive"),
    "silent": ("молчит", "silent"),
    "no_workers": (
        "Нет работающих воркеров: вебхуки и опрос Kaspi стоят.",
        "No worker is running: webhooks and Kaspi polling are stopped.",
    ),
    "daily_volume": ("Оборот по дням", "Daily volume"),
    "by_status": ("По статусам", "By status"),
    "status": ("Статус", "Status"),
    "merchant": ("Мерчант", "Merchant"),
    "provider": ("Провайдер", "Provider"),
    "amount": ("Сумма", "Amount"),
    "paid": ("Оплачено", "Paid"),
    "remaining": ("Осталось", "Remaining"),
    "refunded": ("Возвращено", "Refunded"),
    "created": ("Создан", "Created"),
    "from": ("С", "From"),
    "to": ("По", "To"),
    "min_amount": ("Сумма от", "Amount from"),
    "max_amount": ("до", "to"),
    "search": ("Поиск: id, описание, order_id, user_id", "Search: id, description, order_id, user_id"),
    "filter": ("Найти", "Filter"),
    "reset": ("Сбросить", "Reset"),
    "export_csv": ("Выгрузить CSV", "Export CSV"),
    "next_page": ("Дальше →", "Next →"),
    "nothing_found": ("Ничего не найдено.", "Nothing found."),
    "any": ("любой", "any"),
    "description": ("Описание", "Description"),
    "metadata": ("Метаданные", "Metadata"),
    "customer": ("Покупатель", "Customer"),
    "attempts": ("Попытки", "Attempts"),
    "operations": ("Поступления", "Operations"),
    "refunds": ("Возвраты", "Refunds"),
    "events": ("События", "Events"),
    "not_sent": ("не отправляется вебхуком", "not sent as a webhook"),
    "webhook_log": ("Лог вебхуков", "Webhook log"),
    "resend": ("Отправить снова", "Resend"),
    "refund": ("Вернуть", "Refund"),
    "return_qr": ("QR возврата для покупателя", "Return QR for the customer"),
    "refund_amount": ("Сумма возврата (пусто — всё)", "Refund amount (empty: all)"),
    "reason": ("Причина", "Reason"),
    "confirm_refund": ("Вернуть деньги покупателю?", "Send the money back to the payer?"),
    "cancel_payment": ("Отменить платёж", "Cancel payment"),
    "confirm_cancel": ("Отменить этот платёж?", "Cancel this payment?"),
    "request": ("Запрос", "Request"),
    "response": ("Ответ", "Response"),
    "duration": ("Длительность", "Duration"),
    "error": ("Ошибка", "Error"),
    "next_try": ("Следующая попытка", "Next try"),
    "delivery": ("Доставка", "Delivery"),
    "no_deliveries": ("Вебхуков не было.", "No webhooks."),
    "failed_only": ("Только неудачные", "Failed only"),
    "resend_failed_since": (
        "Отправить снова все неудачные с (время Алматы)",
        "Resend every failed delivery since (Almaty time)",
    ),
    "name": ("Название", "Name"),
    "webhook_url": ("URL вебхука", "Webhook URL"),
    "api_version": ("Версия API", "API version"),
    "underpayment_tolerance": ("Допустимая недоплата, ₸", "Underpayment tolerance, KZT"),
    "tolerance_hint": (
        "Платёж считается оплаченным, если не хватает не больше этой суммы",
        "A payment counts as paid when it lacks at most this much",
    ),
    "save": ("Сохранить", "Save"),
    "create": ("Создать", "Create"),
    "rotate_secret": ("Сменить секрет подписи", "Rotate signing secret"),
    "tokens": ("API-токены", "API tokens"),
    "new_token": ("Новый токен", "New token"),
    "revoke": ("Отозвать", "Revoke"),
    "revoked": ("отозван", "revoked"),
    "shown_once": ("Показан один раз — сохраните его сейчас:", "Shown once — save it now:"),
    "signing_secret": ("Секрет подписи (`whsec`)", "Signing secret (`whsec`)"),
    "secret_unreadable": (
        "не расшифровывается ни одним ключом `PAYCENTER_SECRET_KEYS`",
        "no key in `PAYCENTER_SECRET_KEYS` decrypts it",
    ),
    "add_terminal": ("Добавить терминал", "Add terminal"),
    "token": ("Токен", "Token"),
    "camera_url": ("URL камеры (необязательно)", "Camera URL (optional)"),
    "disable": ("Отключить", "Disable"),
    "enable": ("Включить", "Enable"),
    "check_health": ("Проверить связь", "Check health"),
    "busy": ("занят", "busy"),
    "free": ("свободен", "free"),
    "disabled": ("отключён", "disabled"),
    "health": ("Связь", "Health"),
    "when": ("Когда", "When"),
    "who": ("Кто", "Who"),
    "action": ("Действие", "Action"),
    "target": ("Объект", "Target"),
    "details": ("Подробности", "Details"),
    "viewer_note": ("Режим только для чтения.", "Read-only access."),
    "forbidden_csrf": (
        "Форма устарела или подделана (нет CSRF-токена). Обновите страницу.",
        "The form is stale or forged (CSRF token missing). Reload the page.",
    ),
    "forbidden_viewer": ("У вашей роли нет прав на это действие.", "Your role may not do this."),
    "done": ("Готово.", "Done."),
    "resent_count": ("Отправлено снова: {count}.", "Resent: {count}."),
    "quarantine": ("Карантин", "Quarantine"),
    "quarantine_note": (
        "Строки, которые фоновый цикл не смог обработать и отложил, чтобы продолжить работу с остальными. "
        "Устраните причину и повторите: строка вернётся в свой цикл.",
        "Rows a background loop could not process and set aside, so it went on with the others. "
        "Fix the cause, then retry: the row goes back to its loop.",
    ),
    "quarantined_rows": ("Строк в карантине: {count}", "Quarantined rows: {count}"),
    "loop": ("Цикл", "Loop"),
    "row": ("Строка", "Row"),
    "since": ("С", "Since"),
    "failures": ("Сбоев", "Failures"),
    "retry": ("Повторить", "Retry"),
    "retry_all": ("Повторить все", "Retry all"),
    "nothing_quarantined": ("В карантине ничего нет.", "Nothing is quarantined."),
    "retried_count": ("Возвращено в циклы: {count}.", "Back in their loops: {count}."),
    "not_quarantined": ("Эта строка не в карантине.", "This row is not quarantined."),
    "settings": ("Настройки", "Settings"),
    "yes": ("да", "yes"),
    "no": ("нет", "no"),
    # --- labels that were left in English, and the dashboard chart
    "role_admin": ("администратор", "admin"),
    "role_viewer": ("наблюдатель", "viewer"),
    "language": ("Язык", "Language"),
    "fee_net": ("Комиссия / к зачислению", "Fee / net"),
    "expires": ("Действует до", "Expires"),
    "paid_at": ("Оплачен", "Paid at"),
    "first_visit": ("Первое открытие", "First visit"),
    "method": ("Способ оплаты", "Payment method"),
    "provider_txn": ("Операция провайдера", "Provider transaction"),
    "gross": ("Поступило", "Gross"),
    "fee": ("Комиссия", "Fee"),
    "net": ("К зачислению", "Net"),
    "paid_late": ("оплачен после срока", "paid late"),
    "late": ("после срока", "late"),
    "order_number": ("Номер заказа", "Order number"),
    "event": ("Событие", "Event"),
    "merchant_id": ("ID мерчанта", "Merchant ID"),
    "ms": ("мс", "ms"),
    "for_30_days": ("за 30 дней", "last 30 days"),
    "old_secret_until": ("старый действует до {when}", "the old one is valid until {when}"),
    "chart_empty": ("За 30 дней оплат не было.", "No payments in the last 30 days."),
    "chart_total": ("Всего за 30 дней: {amount}", "Total for 30 days: {amount}"),
    "chart_peak": ("Лучший день: {day}, {amount}", "Best day: {day}, {amount}"),
    "biller_title": ("Kaspi: оплата по номеру счёта", "Kaspi: payment by account number"),
    "bad_input": (
        "В адресе или форме есть символы, которые панель не принимает.",
        "The address or the form holds characters the panel does not take.",
    ),
    # Errors of the panel's own forms (a service's refusal is said in its own words).
    "error_since": ("Укажите дату и время, с которых повторить отправку.", "Give the date and time to resend from."),
    "error_name": ("Укажите название.", "Give a name."),
    "error_terminal_fields": ("Укажите название, адрес и токен терминала.", "Give the terminal's name, URL and token."),
    "error_retry_what": ("Не указано, какую строку повторить.", "Say which row to retry."),
    "error_form_stale": (
        "Форма устарела: обновите страницу и отправьте её ещё раз.",
        "The form is out of date: reload the page and submit it again.",
    ),
    "error_unknown_action": ("Такого действия нет.", "There is no such action."),
    # A terminal's health after a check (Terminal.health).
    "health_ok": ("связь есть", "connected"),
    "health_unreachable": ("нет связи", "unreachable"),
    "health_token_rejected": (
        "токен отклонён: зарегистрируйте терминал заново (`paycenter terminal register`)",
        "token rejected: register the terminal again (`paycenter terminal register`)",
    ),
    # A payment's status by name, where a shop owner reads a summary (the dashboard).
    "status_pending": ("ожидает оплаты", "awaiting payment"),
    "status_processing": ("в обработке", "processing"),
    "status_partially_paid": ("оплачен частично", "partly paid"),
    "status_paid": ("оплачен", "paid"),
    "status_cancelled": ("отменён", "cancelled"),
    "status_expired": ("срок истёк", "expired"),
    "status_refunded": ("возвращён", "refunded"),
    "status_failed": ("не прошёл", "failed"),
    "biller_result_0": ("принят", "accepted"),
    "biller_result_1": ("счёт не найден", "account not found"),
    "biller_result_2": ("отменён или просрочен", "cancelled or expired"),
    "biller_result_3": ("уже оплачен", "already paid"),
    "biller_result_4": ("в обработке", "in progress"),
    "biller_result_5": ("другая ошибка", "other error"),
    "refunds_refused_kaspi_biller": (
        "В протоколе Kaspi для биллеров нет известного paycenter вызова возврата, поэтому paycenter не может "
        "отправить этот возврат. Верните деньги в кабинете продавца Kaspi, затем запишите возврат ниже.",
        "Kaspi's biller protocol has no refund call that paycenter knows of, so paycenter cannot send this "
        "refund. Return the money in Kaspi's merchant cabinet, then record the refund below.",
    ),
    "refunds_refused_kaspi_qr": (
        "В схеме Kaspi QR r1 нет API возвратов, поэтому paycenter не может отправить этот возврат. Сделайте "
        "возврат в приложении `Kaspi Pay` (раздел «Возвраты») там, где была оплата, затем запишите его ниже.",
        "Kaspi QR scheme r1 has no refund API, so paycenter cannot send this refund. Refund it in the `Kaspi Pay` "
        "app (Returns) at the trade point where it was paid, then record it below.",
    ),
    "biller_note": (
        "Покупатель платит в приложении Kaspi по номеру счёта, Kaspi вызывает этот адрес (`check`, затем `pay`). "
        "Передайте Kaspi адрес, формат ответов и адреса, с которых он будет звонить.",
        "The payer pays in the Kaspi app by account number; Kaspi calls this address (`check`, then `pay`). "
        "Give Kaspi the address, the reply format and the addresses it calls from.",
    ),
    "biller_enabled": ("Включён", "Enabled"),
    "biller_enable_hint": (
        "добавьте `kaspi_biller` в `PAYCENTER_ENABLED_PROVIDERS`",
        "add `kaspi_biller` to `PAYCENTER_ENABLED_PROVIDERS`",
    ),
    "biller_url": ("Адрес для Kaspi", "URL for Kaspi"),
    "biller_url_guessed": (
        "`PAYCENTER_PUBLIC_URL` не задан: адрес взят из этого запроса и может быть не тем, что видит Kaspi",
        "`PAYCENTER_PUBLIC_URL` is not set: this address is taken from this request "
        "and may not be the one Kaspi reaches",
    ),
    "biller_method": ("Запросы", "Requests"),
    "biller_format": ("Формат ответов", "Reply format"),
    "biller_networks": ("Разрешённые сети", "Allowed networks"),
    "biller_no_networks": (
        "не заданы: Kaspi не сможет вызвать адрес (`PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS`)",
        "none: Kaspi cannot call the address (`PAYCENTER_KASPI_BILLER_ALLOWED_NETWORKS`)",
    ),
    "biller_secret": ("Общее значение `data1`", "Shared `data1` value"),
    "biller_secret_set": ("задано (не показывается)", "set (not shown)"),
    "biller_secret_unset": ("не задано: проверяется только адрес", "not set: only the address is checked"),
    "biller_service_name": ("Название услуги в Kaspi", "Service name in Kaspi"),
    "biller_service_name_unset": (
        "не задано: покупателю показывается название мерчанта",
        "not set: the payer is shown the merchant's name",
    ),
    "biller_account_digits": ("Цифр в номере счёта", "Account number digits"),
    "biller_settings_hint": (
        "Меняется переменными `PAYCENTER_KASPI_BILLER_*` и перезапуском; проверка: `paycenter config check`.",
        "Changed with the `PAYCENTER_KASPI_BILLER_*` variables and a restart; check with `paycenter config check`.",
    ),
    "account": ("Счёт", "Account"),
    "biller_pays": ("Платежи Kaspi (`pay`)", "Kaspi's pays (`pay`)"),
    "result": ("Результат", "Result"),
    "manual": ("вручную", "manual"),
    "manual_refund": ("Записать возврат, сделанный вне paycenter", "Record a refund made outside paycenter"),
    "manual_refund_note": (
        "Деньги вернули в кабинете банка? Запишите возврат здесь: он будет учтён как ручной, мерчант получит "
        "вебхук `refunded`. Сам paycenter ничего никуда не отправит.",
        "Returned the money in the bank's cabinet? Record it here: it counts as a manual refund and the merchant "
        "gets the `refunded` webhook. paycenter itself sends nothing anywhere.",
    ),
    "manual_refund_amount": ("Сумма, которую вернули", "Amount returned"),
    "note": ("Примечание (обязательно)", "Note (required)"),
    "record": ("Записать", "Record"),
    "confirm_manual_refund": (
        "Деньги уже вернули покупателю вне paycenter? Записать возврат?",
        "Has the money already gone back to the payer outside paycenter? Record the refund?",
    ),
    # --- the API reference, from the panel (the reference itself is in English, the API's language)
    "docs_webhooks_guide": ("Как принимать вебхуки (на русском)", "Receiving webhooks"),
    "docs_in_english": (
        "Справочник API — на английском, как и сам API.",
        "The API reference is in English, as the API itself.",
    ),
    # --- payment links
    "links": ("Ссылки", "Links"),
    "links_title": ("Ссылки на оплату", "Payment links"),
    "link": ("Ссылка", "Link"),
    "link_new": ("Новая ссылка на оплату", "New payment link"),
    "link_kind": ("Вид", "Kind"),
    "link_one_off": ("Разовая", "One-off"),
    "link_reusable": ("Многоразовая", "Reusable"),
    "link_amount_mode": ("Сумма", "Amount"),
    "link_fixed": ("Фиксированная", "Fixed"),
    "link_range": ("Выбирает покупатель (от и до)", "Payer chooses (min to max)"),
    "link_amount": ("Сумма, KZT", "Amount, KZT"),
    "link_min": ("От, KZT", "Min, KZT"),
    "link_max": ("До, KZT", "Max, KZT"),
    "link_description": ("Описание", "Description"),
    "link_expires_minutes": ("Платёж действует, мин", "Payment valid for, min"),
    "link_expires_at": ("Ссылка действует до", "Link valid until"),
    "link_customer_name": ("Имя покупателя", "Customer name"),
    "link_customer_phone": ("Телефон покупателя", "Customer phone"),
    "link_metadata": ("Метаданные (объект JSON, необязательно)", "Metadata (a JSON object, optional)"),
    "link_create": ("Создать ссылку", "Create link"),
    "link_filter": ("Показать", "Show"),
    "link_status": ("Статус", "Status"),
    "link_payments": ("Платежи по ссылке", "Payments made from it"),
    "link_created": ("Создана", "Created"),
    "link_more": ("Дальше", "More"),
    "link_copy": ("Копировать", "Copy"),
    "link_copied": ("Скопировано", "Copied"),
    "link_payment_url": ("Страница платежа", "Payment page"),
    "link_status_active": ("Активна", "Active"),
    "link_status_disabled": ("Отключена", "Disabled"),
    "link_status_expired": ("Истекла", "Expired"),
    "link_status_pending": ("Ожидает оплаты", "Awaiting payment"),
    "link_status_processing": ("Обрабатывается", "Processing"),
    "link_status_partially_paid": ("Оплачен частично", "Partially paid"),
    "link_status_paid": ("Оплачен", "Paid"),
    "link_status_cancelled": ("Отменён", "Cancelled"),
    "link_status_refunded": ("Возвращён", "Refunded"),
    "link_status_failed": ("Ошибка", "Failed"),
}


def text(key: str, lang: str) -> str | None:
    """The text of ``key`` in ``lang`` (Kazakh falls back to Russian until translated), or None."""
    pair = TEXTS.get(key)
    if pair is None:
        return None
    if lang == "kk":
        return KK.get(key, pair[0])
    return pair[1] if lang == "en" else pair[0]


def translator(lang: str) -> Callable[..., str]:
    def t(key: str, **kwargs: object) -> str:
        found = text(key, lang)
        if found is None:
            return key
        return found.format(**kwargs) if kwargs else found

    return t
