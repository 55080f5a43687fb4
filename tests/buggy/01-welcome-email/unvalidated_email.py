# fails: rejects_a_bad_address_without_mailing
# The email field is a bare str: a malformed address is accepted and mailed.
class NewUser(BaseModel):
    email: str
    name: str = Field(min_length=1, max_length=100)


welcome_app = FastAPI()


@welcome_app.post("/users", status_code=201)
def create_user(user: NewUser, background_tasks: BackgroundTasks) -> NewUser:
    # Send the welcome email (its subject greets user.name) without making the client wait for it.
    background_tasks.add_task(send_email, user.email, f"Welcome, {user.name}!", "Thanks for signing up.")
    return user
