"""Word lists for the builtin synthetic email corpus (all invented or very common words)."""

FIRST_NAMES = """
James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard
Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty
Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua
Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy Stephanie Ronald
Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Dorothy Jacob Amy Gary Kathleen Nicholas
Angela Eric Shirley Jonathan Brenda Stephen Emma Larry Anna Justin Pamela Scott Nicole Brandon
Samantha Benjamin Katherine Samuel Christine Gregory Helen Alexander Debra Patrick Rachel Frank
Carolyn Raymond Janet Jack Maria Dennis Catherine Jerry Heather Tyler Diane Aaron Olivia Jose
Julie Adam Joyce Nathan Victoria Henry Ruth Zachary Virginia Douglas Lauren Peter Kelly Kyle
Christina Noah Joan Ethan Evelyn Jeremy Judith Walter Andrea Christian Hannah Keith Megan Roger
Cheryl Terry Jacqueline Austin Martha Sean Madison Gerald Teresa Carl Gloria Harold Sara Dylan
Janice Arthur Ann Lawrence Kathryn Jordan Abigail Jesse Sophia Bryan Frances Billy Jean Bruce
Alice Gabriel Judy Joe Isabella Logan Julia Alan Grace Juan Amber Albert Denise Willie Danielle
Elijah Marilyn Wayne Beverly Randy Charlotte Vincent Natalie Mason Theresa Roy Diana Ralph
Brittany Bobby Doris Russell Kayla Bradley Alexis Philip Lori Eugene Marie Priya Wei Chen Aisha
Omar Fatima Hiroshi Yuki Ahmed Sofia Mateo Lucia Ivan Olga Kwame Amara Ravi Ananya Jin Mei
""".split()

LAST_NAMES = """
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez
Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris
Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill
Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips
Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson
Watson Brooks Chavez Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders
Patel Myers Long Ross Foster Jimenez Powell Jenkins Perry Russell Sullivan Bell Coleman Butler
Henderson Barnes Gonzales Fisher Vasquez Simmons Romero Jordan Patterson Alexander Hamilton
Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis Tran Medina
Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington
Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter
Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black
Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels Ferguson
Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer Hawkins Arnold Pierce
Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong Hudson Carroll
Okafor Nakamura Tanaka Kowalski Novak Ivanova Haddad Mensah Sharma Iyer Zhang Wang Liu Yamamoto
O'Brien O'Connor O'Neill D'Angelo McCarthy MacDonald McKenzie
""".split()

STREET_NAMES = """
Oak Maple Pine Cedar Elm Walnut Willow Birch Chestnut Spruce Hickory Magnolia Sycamore Aspen
Main Church Park Lake Hill River Spring Meadow Forest Sunset Highland Ridge Valley Mill Bridge
Washington Lincoln Jefferson Madison Franklin Jackson Adams Monroe Wilson Lafayette Harrison
Cherry Dogwood Laurel Juniper Poplar Cypress Holly Hawthorn Orchard Prairie Canyon Harbor
McDonald McKinley O'Connor O'Hara MacArthur LaSalle DeKalb Pennsylvania
1st 2nd 3rd 4th 5th 7th 12th 21st 23rd 42nd 101st
""".split()

STREET_PREFIXES = [
    "", "", "", "", "", "", "North ", "South ", "East ", "West ", "Old ", "Little ",
    "N. ", "S. ", "E. ", "W. ", "N ", "NE ", "SW ",
]

# Quadrant / direction after the suffix: 1600 Pennsylvania Avenue NW.
STREET_DIRECTIONS = ["NW", "NE", "SW", "SE", "N", "S", "E", "W"]

UNIT_WORDS = ["Apt", "Apt.", "Suite", "Ste", "Unit", "#"]

STREET_SUFFIXES = [
    "Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln",
    "Drive", "Dr", "Court", "Ct", "Way", "Place", "Pl", "Terrace", "Circle", "Parkway",
    "St.", "Ave.", "Rd.", "Highway", "Square", "Trail", "Plaza",
]

CITIES = [
    ("Houston", "TX", "770"), ("Austin", "TX", "787"), ("Dallas", "TX", "752"),
    ("Portland", "OR", "972"), ("Denver", "CO", "802"), ("Phoenix", "AZ", "850"),
    ("Chicago", "IL", "606"), ("Columbus", "OH", "432"), ("Atlanta", "GA", "303"),
    ("Boston", "MA", "021"), ("Seattle", "WA", "981"), ("Omaha", "NE", "681"),
    ("Nashville", "TN", "372"), ("Raleigh", "NC", "276"), ("Tampa", "FL", "336"),
    ("Madison", "WI", "537"), ("Boise", "ID", "837"), ("Tucson", "AZ", "857"),
    ("Salt Lake City", "UT", "841"), ("San Diego", "CA", "921"), ("Sacramento", "CA", "958"),
    ("Kansas City", "MO", "641"), ("Richmond", "VA", "232"), ("Albany", "NY", "122"),
    ("Pittsburgh", "PA", "152"), ("Minneapolis", "MN", "554"), ("Louisville", "KY", "402"),
    ("Baton Rouge", "LA", "708"), ("Des Moines", "IA", "503"), ("Spokane", "WA", "992"),
    ("Washington", "DC", "200"), ("McAllen", "TX", "785"), ("O'Fallon", "MO", "633"),
    ("St Paul", "MN", "551"), ("New York", "NY", "100"),
]

COMPANIES = [
    ("Northwind Energy", "northwind-energy.com"), ("Bluepeak Logistics", "bluepeak.io"),
    ("Harbor & Vale LLP", "harborvale.com"), ("Cobalt Ridge Capital", "cobaltridge.com"),
    ("Ironleaf Systems", "ironleaf.net"), ("Meridian Health Partners", "meridianhp.org"),
    ("Sableworks", "sableworks.com"), ("Quarry Lane Foods", "quarrylane.com"),
    ("Tessellate Analytics", "tessellate.ai"), ("Granite Bay Insurance", "granitebay.com"),
    ("Lumen Freight", "lumenfreight.com"), ("Westfield Pipeline Co", "westfieldpipe.com"),
    ("Oakmont Realty", "oakmontrealty.com"), ("Brightwater Utilities", "brightwater.us"),
    ("Copperline Telecom", "copperline.net"), ("Aster Biotech", "asterbio.com"),
]

# Work mail sometimes goes through a subdomain: jane.doe@mail.northwind-energy.com.
MAIL_SUBDOMAINS = ["mail", "corp", "us", "eu", "hq"]

FREE_MAIL = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "aol.com", "proton.me", "icloud.com"]

TITLES = [
    "Senior Analyst", "Trading Desk Manager", "VP, Operations", "Account Executive",
    "Staff Engineer", "Director of Finance", "HR Generalist", "Paralegal", "Project Manager",
    "Risk Associate", "Scheduling Coordinator", "Gas Controller", "IT Support Specialist",
    "Contracts Administrator", "Regional Sales Lead", "Data Engineer", "Office Manager",
]

DEPARTMENTS = ["Finance", "Legal", "Trading", "Operations", "HR", "IT", "Sales", "Risk", "Facilities", "Procurement"]

PROJECTS = [
    "Q3 forecast", "pipeline expansion", "Hudson merger", "vendor audit", "west region rollout",
    "billing migration", "risk model refresh", "holiday schedule", "office move", "capacity study",
    "contract renewal", "budget review", "storage upgrade", "compliance training", "board deck",
]

PRODUCTS = [
    "laptop", "standing desk", "conference tickets", "flight to Denver", "hotel booking",
    "software license", "monitor", "team lunch", "training course", "replacement badge",
    "printer toner", "annual subscription", "shipping labels", "catering order",
]

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
TIMES = ["9:00", "9:30", "10:00", "10:30", "11:00", "1:00", "1:30", "2:00", "3:00", "3:30", "4:00", "4:30"]

GREETINGS = ["Hi {first},", "Hello {first},", "Dear {first},", "{first},", "Hey {first},", "Good morning {first},"]
SIGNOFFS = ["Thanks,", "Best,", "Regards,", "Thank you,", "Cheers,", "Best regards,", "Talk soon,"]

CHATTER = [
    "Did you get a chance to look at the {project} numbers?",
    "I think we should push the {project} review to next {weekday}.",
    "The {dept} team wants an update on the {project} before the end of the week.",
    "Can we grab lunch on {weekday}? I want to hear how the {project} is going.",
    "Thanks again for covering for me during the {project} call.",
    "I left the printed copies of the {project} plan on your desk.",
    "Let me know if you need anything else from {dept}.",
    "The meeting with {dept} moved to {time} on {weekday}.",
    "I'll be out of the office on {weekday}; {other} can help with anything urgent.",
    "Attached is the latest draft, please send comments by {weekday}.",
    "We are still waiting on sign-off from {dept} for the {project}.",
    "Good news: the {project} came in under budget this quarter.",
    "Could you forward me the minutes from {weekday}'s meeting?",
    "I spoke with {other} and we agreed to revisit the {project} next month.",
    "Reminder that expense reports for the {project} are due {weekday}.",
    "The numbers look off by about {pct} percent compared with last quarter.",
    "Please keep this between us until the {project} is announced.",
    "I've booked room {room} for {time} on {weekday}.",
    "Sorry for the delay, I was tied up with the {project} all morning.",
    "Have a great weekend and say hi to the family.",
    "The dashboard for the {project} is updated every morning at {time}.",
    "{other} asked whether we can share the {project} deck with {dept}.",
]

TOPIC_SUBJECTS = {
    "chatter": ["RE: {project}", "{project} update", "quick question", "FW: {project}", "lunch {weekday}?", "notes from {weekday}"],
    "meeting": ["call about the {project}", "meeting {weekday} at {time}", "RE: scheduling", "catch up {weekday}"],
    "payment": ["order for the {product}", "payment details", "RE: invoice", "reimbursement for {product}"],
    "hr": ["payroll form", "benefits enrollment", "RE: onboarding paperwork", "W-4 update"],
    "it": ["server issue", "RE: access request", "VPN problem", "credentials for the {project} service"],
    "shipping": ["new address", "delivery of the {product}", "RE: shipping details", "mailing address update"],
    "wire": ["wire transfer", "RE: bank details", "vendor payment for the {project}", "refund"],
}

# camelCase / PascalCase identifiers for IT tickets: look-alikes of generic API keys.
IDENT_VERBS = ["get", "set", "load", "fetch", "build", "update", "parse", "create", "validate", "compute", "render", "handle"]
IDENT_NOUNS = [
    "User", "Account", "Balance", "Report", "Order", "Invoice", "Payment", "Session", "Token", "Cache",
    "Config", "Factory", "Proxy", "Singleton", "Handler", "Manager", "Service", "Controller", "Request",
    "Response", "Customer", "Ledger", "Trade", "Position", "Schedule", "Pipeline", "Http", "Json",
]
IDENT_PREFIXES = ["Abstract", "Default", "Simple", "Base", "Legacy", "Async", "XML", "HTTP"]
IDENT_SUFFIXES = ["2023Q4", "V2", "Impl", "2", "Bean2", "Test", "2002", "Q3", "V10", ""]

# Country calling code and the digit groups of a national number (E.164, invented digits).
INTERNATIONAL_PHONES = [
    ("44", (2, 4, 4)), ("44", (4, 6)), ("49", (2, 6)), ("49", (2, 7)), ("49", (3, 8)), ("33", (1, 2, 2, 2, 2)),
    ("81", (1, 4, 4)), ("91", (5, 5)), ("61", (1, 4, 4)), ("55", (2, 5, 4)), ("52", (2, 4, 4)),
    ("353", (1, 3, 4)), ("41", (2, 3, 2, 2)), ("31", (2, 3, 4)), ("34", (3, 3, 3)), ("39", (2, 4, 4)),
    ("7", (3, 3, 2, 2)), ("86", (2, 4, 4)), ("971", (1, 3, 4)), ("966", (2, 3, 4)),
]
TOLL_FREE_AREAS = ["800", "888", "877", "866", "855", "844", "833"]
