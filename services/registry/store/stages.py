"""Stages: the latest version in each stage, and transitions, archiving the stage's other versions on request."""
from collections.abc import Sequence

from sqlalchemy import select, update

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import InvalidArgument
from services.db.schema import model_versions, registered_models
from services.registry.store import validation
from services.registry.store.base import no_model, no_version
from services.registry.store.entities import latest_versions
from services.registry.store.events import Event, Tx
from services.registry.store.versions import VersionStore


class StageStore(VersionStore):
    """On VersionStore: a transition answers with the version read back."""

    async def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[pb.ModelVersion]:
        """The highest version in each of `stages` (all stages when empty) that has one, in that order."""
        wanted = [validation.stage(s) for s in stages] or list(validation.STAGES)
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(registered_models.c.model_id).where(registered_models.c.name == name))).first()
            if row is None:
                raise no_model(name)
            latest = await latest_versions(conn, [row.model_id])
        by_stage = {v.current_stage: v for v in latest}
        return [by_stage[s] for s in wanted if s in by_stage]

    async def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> pb.ModelVersion:
        number = validation.version(version)
        stage = validation.stage(stage)
        if archive_existing_versions and stage not in validation.ARCHIVING_STAGES:
            raise InvalidArgument(
                f"archive_existing_versions applies to transitions to {' or '.join(validation.ARCHIVING_STAGES)}, not {stage}"
            )
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            previous = (await tx.conn.execute(select(model_versions.c.current_stage).where(
                model_versions.c.model_id == model_id, model_versions.c.version == number
            ))).first()
            if previous is None:
                raise no_version(name, number)
            await self._set_stage(tx, model_id, name, number, previous.current_stage, stage)
            if archive_existing_versions:
                others = (await tx.conn.execute(select(model_versions.c.version).where(
                    model_versions.c.model_id == model_id, model_versions.c.current_stage == stage,
                    model_versions.c.version != number,
                ).order_by(model_versions.c.version))).scalars().all()
                for other in others:
                    await self._set_stage(tx, model_id, name, other, stage, "Archived")
        return await self.get_model_version(name, version)

    async def _set_stage(self, tx: Tx, model_id: int, name: str, version: int, old: str, new: str) -> None:
        await tx.conn.execute(update(model_versions).where(
            model_versions.c.model_id == model_id, model_versions.c.version == version
        ).values(current_stage=new, last_updated_time=tx.now))
        tx.event(Event.MODEL_VERSION_STAGE_TRANSITIONED, name, version, from_stage=old, to_stage=new)
