"""The `energy-ingest` command line.

Only the standard library is imported at module level: gRPC, SQLAlchemy and psycopg take a
while to import, and a Ctrl-C meanwhile must end the command quietly (main catches it)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

log = logging.getLogger("energy_ingest")


def _serve(args: argparse.Namespace) -> int:
    from services.common.config import Settings
    from services.common.errors import ConfigError
    from services.common.logs import configure_logging

    settings = Settings.from_env()
    configure_logging(args.service, settings.log_level)
    if args.service == "ocpp":
        from services.common.security import channel_credentials
        from services.ocpp import gateway, passwords

        credentials = None
        if settings.ocpp_passwords_file:
            credentials = gateway.Credentials(passwords.load(settings.ocpp_passwords_file))
        tls = None
        if settings.tls_cert_file:  # security profile 2: wss:// with the server's certificate
            import ssl

            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        try:
            gateway.run(
                settings.ocpp_listen_addr,
                settings.meter_target,
                credentials=credentials,
                tls=tls,
                max_connections=settings.ocpp_max_connections,
                meter_credentials=channel_credentials(settings),
            )
        except OSError as error:
            raise ConfigError(
                f"cannot listen on {settings.ocpp_listen_addr}: {error.strerror or error}; set "
                "OCPP_LISTEN_ADDR to use another address"
            ) from None
        return 0
    from services.common.server import (
        AddressUnavailable,
        ensure_address_free,
        serve_until_signalled,
    )

    listen_addr = settings.listen_addr(args.service)
    try:
        # Before the component exists: a taken address is refused before any database work.
        ensure_address_free(listen_addr)
        component = importlib.import_module(f"services.{args.service}.component")
        serve_until_signalled(settings, component.build(settings), listen_addr)
    except AddressUnavailable as error:
        variable = error.variable or Settings.listen_variable(args.service)
        raise ConfigError(f"{error}; set {variable} to use another address") from None
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from services.common.config import Settings
    from services.common.errors import ConfigError
    from services.common.logs import configure_logging

    settings = Settings.from_env()
    configure_logging("migrate", settings.log_level)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from services.common import migrations

    for service in args.services or migrations.MIGRATED_SERVICES:
        if service not in migrations.MIGRATED_SERVICES:
            raise ConfigError(f"no migrations for {service!r}: choose from meter, vehicle")
        url = settings.service_database_url(service)
        if args.downgrade:
            migrations.downgrade(service, url, args.downgrade)
        else:
            migrations.upgrade(service, url)
        log.info("migrated", extra={"schema": service, "to": args.downgrade or "head"})
    return 0


def _run(args: argparse.Namespace) -> int:
    from services.common.config import Settings
    from services.runner import run_all

    return run_all(Settings.from_env(), data_dir=args.data_dir)


def parser() -> argparse.ArgumentParser:
    from services.common.config import SERVICE_NAMES

    root = argparse.ArgumentParser(prog="energy-ingest", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service until SIGTERM/SIGINT")
    serve.add_argument("service", choices=(*SERVICE_NAMES, "ocpp"))
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="bring each service's schema to head")
    migrate.add_argument("services", nargs="*", help="meter and/or vehicle (default: both)")
    migrate.add_argument("--downgrade", metavar="REVISION", help="go down to REVISION instead")
    migrate.set_defaults(handler=_migrate)

    run = commands.add_parser(
        "run", help="start all three services (embedded PostgreSQL unless DATABASE_URL is set)"
    )
    run.add_argument("--data-dir", default="var", help="where the embedded database lives")
    run.set_defaults(handler=_run)

    from services.simulate.command import add_parser as add_simulate

    add_simulate(commands)
    from services.report.command import add_parser as add_report

    add_report(commands)
    from services.bench.command import add_parser as add_bench

    add_bench(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the command installed its own handler
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from services.common.errors import DATABASE_UNAVAILABLE, ConfigError

    args = parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        # One line naming the command, no traceback: the fix is in the setup, not the code.
        print(f"energy-ingest {args.command}: {error}", file=sys.stderr)
        return 2
    except DATABASE_UNAVAILABLE as error:  # run and migrate reach the database first
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        print(f"energy-ingest: cannot reach PostgreSQL: {reason}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
