"""Word lists the synthetic banks draw from: Norwegian names, places, companies, merchants and
transaction labels.

Plain tuples, so a draw is an index into them; the order is part of the dataset's determinism,
so append to these lists rather than reorder them (reordering changes every generated value).
People, banks and companies made from these lists are fictional. Merchants and billers are real
brands, as they appear on any statement, but get synthetic organisation and account numbers;
towns and postcodes are real so addresses look right.
"""

from __future__ import annotations

from typing import Final

# Tables: kept dense by hand rather than one item per line.
# fmt: off
FIRST_NAMES: Final = (
    "Ola", "Kari", "Per", "Anne", "Lars", "Ingrid", "Jon", "Marit", "Knut", "Liv", "Ole", "Hilde",
    "Hans", "Randi", "Arne", "Solveig", "Bjørn", "Astrid", "Jan", "Berit", "Erik", "Nina",
    "Kristian", "Silje", "Magnus", "Ida", "Henrik", "Nora", "Sindre", "Emma", "Jakob", "Sofie",
    "Emil", "Ingeborg", "Filip", "Thea", "Mathias", "Maja", "Sander", "Sara", "Tobias", "Julie",
    "Jonas", "Hanna", "Aksel", "Tiril", "Eirik", "Vilde", "Håkon", "Frida", "Torbjørn",
    "Gunnhild", "Øyvind", "Ragnhild", "Sigurd", "Åse", "Trond", "Eli", "Geir", "Tone", "Stian",
    "Camilla", "Espen", "Linn", "Vegard", "Marte", "Kjetil", "Guro", "Odd", "Turid", "Ali",
    "Fatima", "Mohammed", "Aisha", "Piotr", "Agnieszka", "Nguyen", "Mai", "Ahmed", "Leyla", "Tor",
    "Synnøve", "Halvor", "Sunniva", "Audun", "Borghild", "Even", "Mille", "Oskar", "Selma",
)

SURNAMES: Final = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen",
    "Jensen", "Karlsen", "Johnsen", "Pettersen", "Eriksen", "Berg", "Haugen", "Hagen",
    "Johannessen", "Andreassen", "Jacobsen", "Dahl", "Jørgensen", "Halvorsen", "Henriksen",
    "Lund", "Sørensen", "Jakobsen", "Moen", "Gundersen", "Iversen", "Strand", "Solberg",
    "Svendsen", "Eide", "Knutsen", "Martinsen", "Paulsen", "Bakken", "Kristoffersen", "Mathisen",
    "Lie", "Amundsen", "Nguyen", "Rasmussen", "Ali", "Lunde", "Solheim", "Berge", "Moe", "Nygård",
    "Bakke", "Kristensen", "Fredriksen", "Holm", "Lien", "Hauge", "Christensen", "Andresen",
    "Nielsen", "Knudsen", "Evensen", "Sæther", "Aas", "Myhre", "Hanssen", "Ahmed", "Haugland",
    "Thomassen", "Sivertsen", "Simonsen", "Danielsen", "Berntsen", "Sandvik", "Rønning",
    "Arnesen", "Antonsen", "Næss", "Vik", "Haug", "Ellingsen", "Thorsen", "Edvardsen",
    "Birkeland", "Isaksen", "Gulbrandsen", "Ruud", "Aasen", "Strøm", "Myklebust", "Tangen",
    "Ødegård", "Eliassen", "Helland", "Bøe", "Jenssen", "Aune", "Mikkelsen", "Tveit", "Brekke",
    "Abrahamsen", "Madsen", "Kowalski", "Nowak", "Hussain",
)

#: (postcode, town): real Norwegian postcodes of the towns.
TOWNS: Final = (
    ("0150", "Oslo"), ("0557", "Oslo"), ("0661", "Oslo"), ("0768", "Oslo"), ("0875", "Oslo"),
    ("0982", "Oslo"), ("1337", "Sandvika"), ("1413", "Tårnåsen"), ("1530", "Moss"),
    ("1606", "Fredrikstad"), ("1710", "Sarpsborg"), ("1776", "Halden"), ("2000", "Lillestrøm"),
    ("2040", "Kløfta"), ("2317", "Hamar"), ("2380", "Brumunddal"), ("2609", "Lillehammer"),
    ("2815", "Gjøvik"), ("3015", "Drammen"), ("3111", "Tønsberg"), ("3211", "Sandefjord"),
    ("3256", "Larvik"), ("3616", "Kongsberg"), ("3717", "Skien"), ("3921", "Porsgrunn"),
    ("4006", "Stavanger"), ("4307", "Sandnes"), ("4515", "Mandal"), ("4608", "Kristiansand S"),
    ("4836", "Arendal"), ("4876", "Grimstad"), ("5003", "Bergen"), ("5055", "Bergen"),
    ("5141", "Fyllingsdalen"), ("5221", "Nesttun"), ("5411", "Stord"), ("5525", "Haugesund"),
    ("5700", "Voss"), ("6002", "Ålesund"), ("6100", "Volda"), ("6413", "Molde"),
    ("6509", "Kristiansund N"), ("6800", "Førde"), ("6856", "Sogndal"), ("7010", "Trondheim"),
    ("7042", "Trondheim"), ("7300", "Orkanger"), ("7500", "Stjørdal"), ("7600", "Levanger"),
    ("7713", "Steinkjer"), ("7800", "Namsos"), ("8006", "Bodø"), ("8402", "Sortland"),
    ("8514", "Narvik"), ("8622", "Mo i Rana"), ("8900", "Brønnøysund"), ("9008", "Tromsø"),
    ("9405", "Harstad"), ("9510", "Alta"), ("9600", "Hammerfest"), ("9800", "Vadsø"),
    ("9900", "Kirkenes"), ("3510", "Hønefoss"), ("4879", "Grimstad"), ("1440", "Drøbak"),
)

STREETS: Final = (
    "Storgata", "Kirkegata", "Skolegata", "Kongens gate", "Dronningens gate", "Parkveien",
    "Bjørkeveien", "Granveien", "Furuveien", "Eikeveien", "Lønneveien", "Rognveien", "Solbakken",
    "Fjellveien", "Sjøgata", "Strandveien", "Havnegata", "Torggata", "Jernbanegata",
    "Nedre Slottsgate", "Øvre Slottsgate", "Markveien", "Thorvald Meyers gate", "Bogstadveien",
    "Trondheimsveien", "Grensen", "Kongsveien", "Ringveien", "Industriveien", "Næringsveien",
    "Skogveien", "Bakkeveien", "Åsveien", "Liaveien", "Haugeveien", "Elvegata", "Bryggen",
    "Løkkeveien", "Holmenveien", "Sandviksveien", "Nygårdsgaten", "Olav Tryggvasons gate",
    "Munkegata", "Prinsens gate", "Tordenskiolds gate", "Haakon VIIs gate", "Stasjonsveien",
    "Gamle Drammensvei", "Hovedveien", "Smieveien", "Kvernveien", "Tunveien", "Myrveien",
    "Kløverveien", "Blåbærstien", "Tyttebærveien", "Måkeveien", "Ternevegen", "Fyrvegen",
    "Utsiktsveien",
)

#: Words for fictional company names ("{word} {trade} {suffix}").
COMPANY_WORDS: Final = (
    "Nordfjord", "Fjellheim", "Solstrand", "Havbris", "Nordkapp", "Vestland", "Østlandske",
    "Sørlandets", "Midtnorsk", "Trollheim", "Lysaker", "Granli", "Bjørkely", "Furulund", "Skogly",
    "Elvebakken", "Kystlandet", "Fjordglimt", "Polarlys", "Nordlys", "Midnattsol", "Blåfjell",
    "Grønnli", "Sjøbris", "Brattli", "Steinvik", "Sandnes", "Lindeberg", "Tindeland", "Varden",
    "Bølgen", "Tåkeheim", "Viddevang", "Isbre", "Myrvang", "Åsgard",
)

COMPANY_TRADES: Final = (
    "Rør", "Elektro", "Bygg", "Regnskap", "Transport", "Maskin", "Eiendom", "Bakeri", "Frisør",
    "Tannlegesenter", "Advokatfirma", "Eiendomsmegling", "Rådgivning", "Data", "Fiskeoppdrett",
    "Landbruk", "Catering", "Snekkeri", "Maling", "Taxi", "Sykkel", "Marine", "Handel", "Invest",
    "Holding", "Arkitekter", "Kafé", "Blomster", "Møbler", "Auto",
)

COMPANY_SUFFIXES: Final = (
    "AS", "AS", "AS", "AS", "ASA", "ENK", "DA", "ANS", "SA", "NUF",
)

#: Trades whose firms hold clients' money (and so a client account).
CLIENT_ACCOUNT_TRADES: Final = frozenset({
    "Advokatfirma", "Eiendomsmegling", "Regnskap",
})

#: Domestic card merchants (chain names as printed on statements).
MERCHANTS: Final = (
    "REMA 1000", "KIWI", "COOP EXTRA", "COOP PRIX", "COOP MEGA", "MENY", "SPAR", "JOKER",
    "BUNNPRIS", "VINMONOPOLET", "NARVESEN", "7-ELEVEN", "VY", "RUTER", "SKYSS", "ATB", "CIRCLE K",
    "UNO-X", "ESSO", "YX", "ELKJØP", "POWER", "CLAS OHLSON", "XXL", "SPORT 1", "IKEA", "JULA",
    "BILTEMA", "EUROPRIS", "NORMAL", "APOTEK 1", "VITUSAPOTEK", "BOOTS APOTEK", "H&M", "CUBUS",
    "DRESSMANN", "ANTON SPORT", "NILLE", "JERNIA", "MAX BURGERS", "PEPPES PIZZA", "BURGER KING",
    "STARBUCKS", "ESPRESSO HOUSE", "WAYNE'S COFFEE", "SATS", "NORLI", "ARK", "KOMPLETT.NO",
    "FINN.NO", "NRK", "SAS", "NORWEGIAN", "WIDERØE", "HURTIGRUTEN",
)

#: (merchant, country, currency): card purchases abroad or in foreign-currency web shops.
FOREIGN_MERCHANTS: Final = (
    ("AMAZON EU SARL", "LU", "EUR"), ("ZALANDO SE", "DE", "EUR"), ("SPOTIFY AB", "SE", "SEK"),
    ("APPLE.COM/BILL", "IE", "EUR"), ("UBER *TRIP", "US", "USD"), ("NETFLIX.COM", "NL", "EUR"),
    ("ICA SUPERMARKET", "SE", "SEK"), ("SYSTEMBOLAGET", "SE", "SEK"),
    ("IKEA STOCKHOLM", "SE", "SEK"), ("HOTEL ADLON BERLIN", "DE", "EUR"),
    ("EL CORTE INGLES", "ES", "EUR"), ("MERCADONA ALICANTE", "ES", "EUR"),
    ("AIRBNB * HMXYZ", "IE", "EUR"), ("STEAMGAMES.COM", "US", "USD"),
    ("BOOKING.COM", "NL", "EUR"), ("LIDL GDANSK", "PL", "EUR"),
    ("STARBUCKS NEW YORK", "US", "USD"), ("CARREFOUR NICE", "FR", "EUR"),
    ("DUTY FREE CPH", "DK", "EUR"), ("GOOGLE *CLOUD", "IE", "USD"),
)

#: (street, postcode, town) per country of FOREIGN_MERCHANTS, for their postal addresses.
FOREIGN_ADDRESSES: Final = {
    "LU": ("Rue Joseph Junck", "L-1839", "Luxembourg"),
    "DE": ("Friedrichstraße", "10117", "Berlin"),
    "SE": ("Drottninggatan", "111 51", "Stockholm"),
    "IE": ("Hollyhill Industrial Estate", "T23 YK84", "Cork"),
    "US": ("Market Street", "94103", "San Francisco"),
    "NL": ("Herengracht", "1017 CE", "Amsterdam"),
    "ES": ("Calle de Alcalá", "28014", "Madrid"),
    "PL": ("Długa", "80-827", "Gdańsk"),
    "FR": ("Avenue Jean Médecin", "06000", "Nice"),
    "DK": ("Lufthavnsboulevarden", "2770", "Kastrup"),
}

#: Units of NOK per unit of the currency, around which daily rates vary.
EXCHANGE_RATES: Final = {
    "EUR": 11.72,
    "USD": 10.94,
    "SEK": 1.02,
    "DKK": 1.57,
    "GBP": 13.85,
}

#: Billers paid by avtalegiro or efaktura.
BILLERS: Final = (
    "Hafslund Strøm AS", "Fjordkraft AS", "Tibber Norge AS", "Telenor Norge AS", "Telia Norge AS",
    "Ice Communication Norge AS", "Gjensidige Forsikring ASA", "If Skadeforsikring NUF",
    "Tryg Forsikring", "Fremtind Forsikring AS", "Storebrand Livsforsikring AS",
    "Oslo kommune Eiendomsskatt", "Bergen kommune Kommunale avgifter", "Statens vegvesen",
    "Lånekassen", "NRK Lisens", "Altibox AS", "Get AS", "Boligbyggelaget Usbl", "OBOS BBL",
    "Sameiet Solbakken", "Viaplay Group AB", "Norsk Tipping AS", "Vipps MobilePay AS",
    "SATS Norway AS", "Fjellheim Barnehage SA", "Vestland fylkeskommune",
)

#: The banks' own transaction labels (BankTransactionCode.freeText), by what they describe.
LABEL_CARD_PURCHASE: Final = "Varekjøp"
LABEL_VISA: Final = "Visa"
LABEL_CASH_WITHDRAWAL: Final = "Kontantuttak"
LABEL_ONLINE_GIRO: Final = "Nettgiro"
LABEL_EINVOICE: Final = "Efaktura"
LABEL_DIRECT_DEBIT: Final = "Avtalegiro"
LABEL_INSTANT: Final = "Straksutbetaling"
LABEL_SALARY: Final = "Lønn"
LABEL_TRANSFER: Final = "Overføring"
LABEL_INTEREST: Final = "Renter"
LABEL_FEE: Final = "Gebyr"
LABEL_DEPOSIT: Final = "Innskudd"
LABEL_INCOMING: Final = "Innbetaling"
LABEL_KID_PAYMENT: Final = "Innbetaling KID"
LABEL_CARD_SETTLEMENT: Final = "Kortoppgjør"
LABEL_REVERSAL: Final = "Tilbakeføring"
LABEL_INSTALMENT: Final = "Avdrag"
LABEL_TOP_UP: Final = "Påfylling"
LABEL_WITHHOLDING_TAX: Final = "Skattetrekk"
LABEL_FOREIGN_IN: Final = "Innbetaling fra utlandet"
LABEL_FOREIGN_OUT: Final = "Betaling til utlandet"
LABEL_PAYOUT: Final = "Utbetaling"

#: Free-text notes a payer writes (Transaction.additionalInfo).
PAYMENT_NOTES: Final = (
    "Husleie", "Middag fredag", "Tilbakebetaling lån", "Gave", "Strøm deling", "Hytteleie",
    "Fotballtrening", "Bursdagsgave", "Kino", "Felleskostnader", "Depositum", "Bilforsikring",
    "Barnehage", "SFO", "Korpskontingent", "Dugnad", "Julegave", "Ferie", "Taxi deling",
    "Konsertbilletter",
)

#: Curated fictional bank names; make_banks continues with combinations of the lists below.
BANK_NAMES: Final = (
    "Fjordkysten Sparebank", "Nordlys Bank ASA", "Vidde Sparebank", "Havgapet Bank ASA",
    "Sparebanken Trollfjord", "Midnattsol Sparebank", "Bølgen Bank ASA", "Lofotkysten Sparebank",
    "Fjellbygda Sparebank", "Polarsirkel Bank ASA", "Sørkysten Sparebank",
    "Innlandet Kredittbank",
)

#: Fictional places for bank names.
BANK_PLACES: Final = (
    "Austevik", "Bjørkedal", "Blåfjell", "Brattvåg", "Dalsbygda", "Eidsvika", "Elvedal",
    "Fagernes", "Fjellstrand", "Fossheim", "Furuland", "Granvik", "Grønnfjord", "Hafsbotn",
    "Hammarvik", "Havbakken", "Heggedal", "Holmsund", "Isfjorden", "Jøldal", "Kaldvik",
    "Kjerringøy", "Kvitfjell", "Langedal", "Lilleby", "Lyngstad", "Malmvik", "Måneskinn",
    "Nesbygda", "Nordheim", "Odda", "Ørnes", "Rognstad", "Rørvik", "Sandvær", "Sjøholt",
    "Skarvik", "Skogsbygda", "Solvang", "Steinsland", "Storvik", "Strandebarm", "Sunndal",
    "Tindfjord", "Tjeldsund", "Utvika", "Valdres", "Vangsnes", "Vestvik", "Øyfjell",
)

#: Patterns for bank names made from a place.
BANK_FORMS: Final = (
    "{} Sparebank", "Sparebanken {}", "{} Bank ASA", "{} Kredittbank AS", "{} Sparebank 1872",
)

#: Account names by kind, as banks print them (Account.name, at most 70 characters).
ACCOUNT_NAMES: Final = {
    "salary": ("Brukskonto", "Lønnskonto", "Alltid-konto", "Brukskonto Pluss"),
    "savings": ("Sparekonto", "Høyrentekonto", "BSU", "Feriekonto", "Bufferkonto"),
    "loan": ("Boliglån", "Billån", "Forbrukslån", "Rammelån", "Studielån refinansiert"),
    "credit": ("Kredittkort", "Mastercard Gold", "Visa Kreditt", "Reisekort"),
    "prepaid": ("Forhåndsbetalt kort", "Ungdomskort", "Gavekort konto"),
    "currency": ("Valutakonto",),
    "business": ("Driftskonto", "Bedriftskonto", "Driftskonto 2"),
    "tax": ("Skattetrekkskonto",),
    "client": ("Klientkonto", "Klientkonto særskilt"),
    "no_balance": ("Oppgjørskonto", "Transittkonto"),
    "other": ("Depositumskonto", "Gavekonto", "Sperret konto"),
}
# fmt: on
