from services.common.migrations import run_migrations_online

run_migrations_online()
